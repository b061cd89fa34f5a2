-- The account's state: `status` is 'active' or 'disabled' (by the operator); `erase_at` (unix
-- seconds) is when a deletion the user asked for erases the account, NULL when none is pending.
-- The indexes serve the periodic sweep: due erasures, expired sessions, spent refresh tokens.
ALTER TABLE wxuser ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE wxuser ADD COLUMN erase_at INTEGER NULL;
CREATE INDEX idx_wxuser_erase_at ON wxuser (erase_at);
CREATE INDEX idx_wx_session_expires_at ON wx_session (expires_at);
CREATE INDEX idx_wx_refresh_token_rotated_at ON wx_refresh_token (rotated_at);
