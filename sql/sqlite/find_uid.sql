SELECT uid FROM wxuser WHERE user_id = ?
