-- wxuser: one row per openid. Column names are the original tutorial's, so existing queries keep
-- working. openids and unionids are case-sensitive, hence utf8mb4_bin on them; the table default
-- is utf8mb4 so that nicknames with emoji round-trip.
CREATE TABLE IF NOT EXISTS wxuser (
    user_id    VARCHAR(64)   COLLATE utf8mb4_bin NOT NULL,
    unionid    VARCHAR(64)   COLLATE utf8mb4_bin NULL,
    nickName   VARCHAR(255)  NULL,
    avatar     VARCHAR(1024) NULL,
    gender     TINYINT       NULL,
    created_at DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (user_id),
    KEY idx_wxuser_unionid (unionid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Uploaded avatars, addressed by the SHA-256 of their bytes: the same image is stored once,
-- and every node sharing the database serves it.
CREATE TABLE IF NOT EXISTS avatar (
    hash         CHAR(64)     CHARACTER SET ascii NOT NULL,
    content_type VARCHAR(32)  CHARACTER SET ascii NOT NULL,
    bytes        MEDIUMBLOB   NOT NULL,
    created_at   DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (hash)
) ENGINE = InnoDB;
