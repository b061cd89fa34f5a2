UPDATE wx_session SET revoked_at = ? WHERE uid = ? AND revoked_at IS NULL
