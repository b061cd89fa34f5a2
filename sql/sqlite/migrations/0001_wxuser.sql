-- wxuser: one row per openid, with the original tutorial's column names. Timestamps are UTC
-- ISO-8601 text with milliseconds. The last four columns were added after the first release (by
-- ALTER TABLE) and sit at the end so that this table equals an upgraded one.
-- Baseline migration: IF NOT EXISTS, because adopting a pre-migration database replays it.
CREATE TABLE IF NOT EXISTS wxuser (
    user_id         TEXT    NOT NULL PRIMARY KEY,
    unionid         TEXT    NULL,
    nickName        TEXT    NULL,
    avatar          TEXT    NULL,
    gender          INTEGER NULL,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    session_key     TEXT    NULL,
    phoneNumber     TEXT    NULL,
    purePhoneNumber TEXT    NULL,
    countryCode     TEXT    NULL
);
CREATE INDEX IF NOT EXISTS idx_wxuser_unionid ON wxuser (unionid);
