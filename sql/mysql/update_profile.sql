-- A NULL parameter keeps the stored value.
UPDATE wxuser
SET nickName = COALESCE(?, nickName), avatar = COALESCE(?, avatar),
    gender = COALESCE(?, gender), updated_at = CURRENT_TIMESTAMP(3)
WHERE user_id = ?
