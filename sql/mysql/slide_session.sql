UPDATE wx_session SET expires_at = ?, last_used_at = ? WHERE id = ?
