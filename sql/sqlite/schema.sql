-- wxuser: one row per openid, with the original tutorial's column names. Timestamps are UTC
-- ISO-8601 text with milliseconds.
CREATE TABLE IF NOT EXISTS wxuser (
    user_id    TEXT    NOT NULL PRIMARY KEY,
    unionid    TEXT    NULL,
    nickName   TEXT    NULL,
    avatar     TEXT    NULL,
    gender     INTEGER NULL,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_wxuser_unionid ON wxuser (unionid);

-- Uploaded avatars, addressed by the SHA-256 of their bytes: the same image is stored once.
CREATE TABLE IF NOT EXISTS avatar (
    hash         TEXT NOT NULL PRIMARY KEY,
    content_type TEXT NOT NULL,
    bytes        BLOB NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
