-- Uploaded avatars, addressed by the SHA-256 of their bytes: the same image is stored once,
-- and every node sharing the database serves it.
-- Baseline migration: IF NOT EXISTS, because adopting a pre-migration database replays it.
CREATE TABLE IF NOT EXISTS avatar (
    hash         CHAR(64)     CHARACTER SET ascii NOT NULL,
    content_type VARCHAR(32)  CHARACTER SET ascii NOT NULL,
    bytes        MEDIUMBLOB   NOT NULL,
    created_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (hash)
) ENGINE = InnoDB;
