-- Only a live session is revoked, so the first revocation's time is kept and only the first
-- writes an event.
UPDATE wx_session SET revoked_at = ? WHERE id = ? AND uid = ? AND revoked_at IS NULL
