-- The migrations applied to this database: one row per version, written in the same transaction
-- as its DDL. The checksum (SHA-256 of the file) detects a released migration edited afterwards.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
