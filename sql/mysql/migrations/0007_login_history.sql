-- Login history: one row per successful login or refresh (`kind`), kept WXLOGIN_LOGIN_HISTORY
-- and then purged by the sweep (hence the index on `at`). Times are unix seconds.
CREATE TABLE IF NOT EXISTS wx_login (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    uid        CHAR(32)     CHARACTER SET ascii NOT NULL,
    at         BIGINT       NOT NULL,
    session_id CHAR(32)     CHARACTER SET ascii NOT NULL,
    ip         VARCHAR(64)  CHARACTER SET ascii NULL,
    user_agent VARCHAR(255) NULL,
    kind       VARCHAR(8)   CHARACTER SET ascii NOT NULL,
    PRIMARY KEY (id),
    KEY idx_wx_login_uid_at (uid, at),
    KEY idx_wx_login_at (at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
