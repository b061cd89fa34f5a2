INSERT INTO wx_refresh_token (hash, session_id, created_at) VALUES (?, ?, ?)
