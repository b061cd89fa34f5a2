-- Claims a login code for this node's WeChat call: one row changed means the claim is ours.
INSERT IGNORE INTO wx_code_replay (code_hash, openid, unionid, created_at, expires_at)
VALUES (?, NULL, NULL, ?, ?)
