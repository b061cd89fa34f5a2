-- A NULL parameter keeps the stored value.
UPDATE wxuser
SET nickName = COALESCE(?1, nickName), avatar = COALESCE(?2, avatar),
    gender = COALESCE(?3, gender), updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE user_id = ?4
