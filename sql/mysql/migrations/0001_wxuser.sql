-- wxuser: one row per openid. Column names are the original tutorial's, so existing queries keep
-- working. openids and unionids are case-sensitive, hence utf8mb4_bin on them; the table default
-- is utf8mb4 so that nicknames with emoji round-trip. The last four columns were added after the
-- first release (by ALTER TABLE) and sit at the end so that this table equals an upgraded one.
-- Baseline migration: IF NOT EXISTS, because adopting a pre-migration database replays it.
CREATE TABLE IF NOT EXISTS wxuser (
    user_id         VARCHAR(64)   COLLATE utf8mb4_bin NOT NULL,
    unionid         VARCHAR(64)   COLLATE utf8mb4_bin NULL,
    nickName        VARCHAR(255)  NULL,
    avatar          VARCHAR(1024) NULL,
    gender          TINYINT       NULL,
    created_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    session_key     VARCHAR(64)   COLLATE utf8mb4_bin NULL,
    phoneNumber     VARCHAR(32)   NULL,
    purePhoneNumber VARCHAR(32)   NULL,
    countryCode     VARCHAR(8)    NULL,
    PRIMARY KEY (user_id),
    KEY idx_wxuser_unionid (unionid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
