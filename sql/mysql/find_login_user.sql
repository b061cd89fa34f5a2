-- What a login needs to know about the user it writes: the uid, whether the operator disabled
-- the account, and when a pending deletion erases it. Not locked (first logins of one openid
-- would deadlock on the gap): a disable committed meanwhile still wins, because every session
-- of a disabled user is refused (session_state.sql, find_refresh.sql).
SELECT uid, status, erase_at FROM wxuser WHERE user_id = ?
