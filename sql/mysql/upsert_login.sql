-- One atomic statement: concurrent first logins of one openid collide on the primary key and
-- become updates, never a second row. A NULL profile parameter keeps the stored value; the
-- session_key is always the latest; the uid is set once, by the insert, and never changed.
INSERT INTO wxuser (user_id, unionid, nickName, avatar, gender, session_key, uid)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON DUPLICATE KEY UPDATE
    unionid     = COALESCE(VALUES(unionid), unionid),
    nickName    = COALESCE(VALUES(nickName), nickName),
    avatar      = COALESCE(VALUES(avatar), avatar),
    gender      = COALESCE(VALUES(gender), gender),
    session_key = VALUES(session_key),
    updated_at  = CURRENT_TIMESTAMP(3)
