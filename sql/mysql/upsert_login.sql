-- One atomic statement: concurrent first logins of one openid collide on the primary key and
-- become updates, never a second row. A NULL profile parameter keeps the stored value; the
-- session_key is always the latest; the uid is set once, by the insert, and never changed.
-- A disabled account's row is left as it is (status is not assigned here, so every IF reads the
-- stored one): the login then reads it back as disabled, without a read before the upsert.
INSERT INTO wxuser (user_id, unionid, nickName, avatar, gender, session_key, uid)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON DUPLICATE KEY UPDATE
    unionid     = IF(status <=> 'disabled', unionid, COALESCE(VALUES(unionid), unionid)),
    nickName    = IF(status <=> 'disabled', nickName, COALESCE(VALUES(nickName), nickName)),
    avatar      = IF(status <=> 'disabled', avatar, COALESCE(VALUES(avatar), avatar)),
    gender      = IF(status <=> 'disabled', gender, COALESCE(VALUES(gender), gender)),
    session_key = IF(status <=> 'disabled', session_key, VALUES(session_key)),
    updated_at  = IF(status <=> 'disabled', updated_at, CURRENT_TIMESTAMP(3))
