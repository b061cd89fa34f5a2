-- Forgets one code past its bound: a claim whose node gave up or died, or an outcome past the
-- replay window. A new claim may then be made.
DELETE FROM wx_code_replay WHERE code_hash = ? AND expires_at < ?
