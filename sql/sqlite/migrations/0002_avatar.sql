-- Uploaded avatars, addressed by the SHA-256 of their bytes: the same image is stored once.
-- Baseline migration: IF NOT EXISTS, because adopting a pre-migration database replays it.
CREATE TABLE IF NOT EXISTS avatar (
    hash         TEXT NOT NULL PRIMARY KEY,
    content_type TEXT NOT NULL,
    bytes        BLOB NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
