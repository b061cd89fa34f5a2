-- One atomic statement: a second login of the same openid becomes an update, never a second
-- row. A NULL profile parameter keeps the stored value; the session_key is always the latest;
-- the uid is set once, by the insert, and never changed.
INSERT INTO wxuser (user_id, unionid, nickName, avatar, gender, session_key, uid)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (user_id) DO UPDATE SET
    unionid     = COALESCE(excluded.unionid, wxuser.unionid),
    nickName    = COALESCE(excluded.nickName, wxuser.nickName),
    avatar      = COALESCE(excluded.avatar, wxuser.avatar),
    gender      = COALESCE(excluded.gender, wxuser.gender),
    session_key = excluded.session_key,
    updated_at  = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
