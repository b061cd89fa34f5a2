-- Every user gets a stable id that never changes and is never reused (tokens name it in `sub`):
-- 16 random bytes in lowercase hex. Existing rows get one each here (MD5 of a fresh UUID and
-- the openid: MariaDB 10.11's RANDOM_BYTES is not in MySQL 5.7); new rows get theirs from the
-- login upsert (`secret::random_hex(16)`).
ALTER TABLE wxuser ADD COLUMN uid CHAR(32) CHARACTER SET ascii NULL;
UPDATE wxuser SET uid = LOWER(MD5(CONCAT(UUID(), user_id))) WHERE uid IS NULL;
ALTER TABLE wxuser MODIFY uid CHAR(32) CHARACTER SET ascii NOT NULL, ADD UNIQUE KEY uq_wxuser_uid (uid);
