-- The first revocation's time is kept.
UPDATE wx_session SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND uid = ?
