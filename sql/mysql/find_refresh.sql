-- A refresh token with its session and, when its row still exists, its user and their status.
SELECT r.session_id, s.uid, u.user_id, u.unionid, r.rotated_at, r.successor_access,
       s.expires_at, s.max_expires_at, s.revoked_at, u.status
FROM wx_refresh_token r
JOIN wx_session s ON s.id = r.session_id
LEFT JOIN wxuser u ON u.uid = s.uid
WHERE r.hash = ?
