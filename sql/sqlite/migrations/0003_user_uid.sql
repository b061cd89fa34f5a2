-- Every user gets a stable id that never changes and is never reused (tokens name it in `sub`):
-- 16 random bytes in lowercase hex. Existing rows get one each here; new rows get theirs from
-- the login upsert. SQLite cannot add a NOT NULL column without a default to a table with rows,
-- so NOT NULL is the upsert's job here (MySQL enforces it); the unique index holds on both.
ALTER TABLE wxuser ADD COLUMN uid TEXT NULL;
UPDATE wxuser SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
CREATE UNIQUE INDEX idx_wxuser_uid ON wxuser (uid);
