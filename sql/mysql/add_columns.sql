-- Columns added after the first release, before numbered migrations. Used only when adopting a
-- database created before migrations (see src/store/migrate.rs): each ALTER runs, and
-- "duplicate column" (the column is already there) is ignored. Fresh databases get these
-- columns from migrations/0001_wxuser.sql.
ALTER TABLE wxuser ADD COLUMN session_key VARCHAR(64) COLLATE utf8mb4_bin NULL;
ALTER TABLE wxuser ADD COLUMN phoneNumber VARCHAR(32) NULL;
ALTER TABLE wxuser ADD COLUMN purePhoneNumber VARCHAR(32) NULL;
ALTER TABLE wxuser ADD COLUMN countryCode VARCHAR(8) NULL;
