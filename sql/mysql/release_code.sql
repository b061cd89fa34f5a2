-- Gives a claim up after WeChat failed, so that a retry may ask again.
DELETE FROM wx_code_replay WHERE code_hash = ? AND openid IS NULL
