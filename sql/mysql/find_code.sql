-- A claimed code: its outcome (NULL while the claiming node still asks WeChat) and its bound.
SELECT openid, unionid, expires_at FROM wx_code_replay WHERE code_hash = ?
