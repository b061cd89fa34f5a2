-- Erases a user's code-replay entries (who their recent login codes stood for), in the erase
-- transaction: the one parameter is the user's openid.
DELETE FROM wx_code_replay WHERE openid = ?
