SELECT session_key FROM wxuser WHERE user_id = ?
