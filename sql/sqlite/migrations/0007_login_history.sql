-- Login history: one row per successful login or refresh (`kind`), kept WXLOGIN_LOGIN_HISTORY
-- and then purged by the sweep (hence the index on `at`). Times are unix seconds.
CREATE TABLE wx_login (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    uid        TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    session_id TEXT    NOT NULL,
    ip         TEXT    NULL,
    user_agent TEXT    NULL,
    kind       TEXT    NOT NULL
);
CREATE INDEX idx_wx_login_uid_at ON wx_login (uid, at);
CREATE INDEX idx_wx_login_at ON wx_login (at);
