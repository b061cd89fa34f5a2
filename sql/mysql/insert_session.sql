INSERT INTO wx_session (id, uid, created_at, last_used_at, expires_at, max_expires_at, user_agent, ip)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
