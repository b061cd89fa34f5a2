SELECT id FROM wx_session WHERE uid = ? AND revoked_at IS NULL FOR UPDATE
