-- The account's state: `status` is 'active' or 'disabled' (by the operator); `erase_at` (unix
-- seconds) is when a deletion the user asked for erases the account, NULL when none is pending.
-- The indexes serve the periodic sweep: due erasures, expired sessions, spent refresh tokens.
ALTER TABLE wxuser
    ADD COLUMN status   VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'active',
    ADD COLUMN erase_at BIGINT NULL,
    ADD KEY idx_wxuser_erase_at (erase_at);
ALTER TABLE wx_session ADD KEY idx_wx_session_expires_at (expires_at);
ALTER TABLE wx_refresh_token ADD KEY idx_wx_refresh_token_rotated_at (rotated_at);
