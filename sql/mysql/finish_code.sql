-- Records the outcome of a claimed code, for retries within the replay window.
UPDATE wx_code_replay SET openid = ?, unionid = ?, expires_at = ? WHERE code_hash = ?
