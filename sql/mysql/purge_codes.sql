-- Forgets codes past their replay window (and claims past their bound).
DELETE FROM wx_code_replay WHERE expires_at < ?
