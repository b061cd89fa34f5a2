SELECT id, created_at, last_used_at, expires_at, user_agent, ip
FROM wx_session
WHERE uid = ? AND revoked_at IS NULL AND expires_at > ?
ORDER BY created_at DESC, id
