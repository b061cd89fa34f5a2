-- The migrations applied to this database: one row per version, written right after its DDL.
-- The checksum (SHA-256 of the file) detects a released migration edited afterwards.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INT UNSIGNED NOT NULL,
    name       VARCHAR(255) NOT NULL,
    checksum   CHAR(64)     CHARACTER SET ascii NOT NULL,
    applied_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (version)
) ENGINE = InnoDB;
