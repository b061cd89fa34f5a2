-- What a login needs to know about the user it writes: the uid, whether the operator disabled
-- the account, and when a pending deletion erases it.
SELECT uid, status, erase_at FROM wxuser WHERE user_id = ?
