-- The session's revocation, and whether its user's row still exists and is not disabled.
SELECT s.revoked_at, u.uid, u.status
FROM wx_session s LEFT JOIN wxuser u ON u.uid = s.uid
WHERE s.id = ?
