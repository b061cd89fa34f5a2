-- Sessions: one per login, ended by logout, revocation, theft detection or expiry. Times are
-- unix seconds. `expires_at` slides by WXLOGIN_REFRESH_TTL on each refresh, capped by
-- `max_expires_at` (the login plus WXLOGIN_SESSION_MAX_AGE).
CREATE TABLE IF NOT EXISTS wx_session (
    id             CHAR(32)     CHARACTER SET ascii NOT NULL,
    uid            CHAR(32)     CHARACTER SET ascii NOT NULL,
    created_at     BIGINT       NOT NULL,
    last_used_at   BIGINT       NOT NULL,
    expires_at     BIGINT       NOT NULL,
    max_expires_at BIGINT       NOT NULL,
    revoked_at     BIGINT       NULL,
    user_agent     VARCHAR(255) NULL,
    ip             VARCHAR(64)  CHARACTER SET ascii NULL,
    PRIMARY KEY (id),
    KEY idx_wx_session_uid (uid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
-- Refresh tokens, by the hex SHA-256 of the token (the token itself is never stored). A row is
-- spent once (`rotated_at`); `successor_access` is the access token that rotation issued, so a
-- concurrent or retried refresh within WXLOGIN_REFRESH_REUSE_GRACE gets the same pair.
CREATE TABLE IF NOT EXISTS wx_refresh_token (
    hash             CHAR(64) CHARACTER SET ascii NOT NULL,
    session_id       CHAR(32) CHARACTER SET ascii NOT NULL,
    created_at       BIGINT   NOT NULL,
    rotated_at       BIGINT   NULL,
    successor_access TEXT     CHARACTER SET ascii NULL,
    PRIMARY KEY (hash),
    KEY idx_wx_refresh_token_session (session_id)
) ENGINE = InnoDB;
