-- Columns added after the first release, one ALTER per statement. Each is applied at start-up;
-- "duplicate column" (the column is already there) is expected and ignored, which makes the
-- migration idempotent on MySQL, MariaDB and TiDB alike (MySQL has no ADD COLUMN IF NOT EXISTS).
ALTER TABLE wxuser ADD COLUMN session_key VARCHAR(64) COLLATE utf8mb4_bin NULL;
ALTER TABLE wxuser ADD COLUMN phoneNumber VARCHAR(32) NULL;
ALTER TABLE wxuser ADD COLUMN purePhoneNumber VARCHAR(32) NULL;
ALTER TABLE wxuser ADD COLUMN countryCode VARCHAR(8) NULL;
