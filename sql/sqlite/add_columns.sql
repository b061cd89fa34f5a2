-- Columns added after the first release, one ALTER per statement. Each is applied at start-up;
-- "duplicate column name" (the column is already there) is expected and ignored, which makes
-- the migration idempotent.
ALTER TABLE wxuser ADD COLUMN session_key TEXT NULL;
ALTER TABLE wxuser ADD COLUMN phoneNumber TEXT NULL;
ALTER TABLE wxuser ADD COLUMN purePhoneNumber TEXT NULL;
ALTER TABLE wxuser ADD COLUMN countryCode TEXT NULL;
