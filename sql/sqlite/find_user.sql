SELECT user_id, unionid, nickName, avatar, gender FROM wxuser WHERE user_id = ?
