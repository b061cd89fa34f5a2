-- Sessions: one per login, ended by logout, revocation, theft detection or expiry. Times are
-- unix seconds. `expires_at` slides by WXLOGIN_REFRESH_TTL on each refresh, capped by
-- `max_expires_at` (the login plus WXLOGIN_SESSION_MAX_AGE).
CREATE TABLE wx_session (
    id             TEXT    NOT NULL PRIMARY KEY,
    uid            TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_expires_at INTEGER NOT NULL,
    revoked_at     INTEGER NULL,
    user_agent     TEXT    NULL,
    ip             TEXT    NULL
);
CREATE INDEX idx_wx_session_uid ON wx_session (uid);
-- Refresh tokens, by the hex SHA-256 of the token (the token itself is never stored). A row is
-- spent once (`rotated_at`); `successor_access` is the access token that rotation issued, so a
-- concurrent or retried refresh within WXLOGIN_REFRESH_REUSE_GRACE gets the same pair.
CREATE TABLE wx_refresh_token (
    hash             TEXT    NOT NULL PRIMARY KEY,
    session_id       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    rotated_at       INTEGER NULL,
    successor_access TEXT    NULL
);
CREATE INDEX idx_wx_refresh_token_session ON wx_refresh_token (session_id);
