-- Only the first of concurrent rotations matches the row: the others see rotated_at set.
UPDATE wx_refresh_token SET rotated_at = ?, successor_access = ?
WHERE hash = ? AND rotated_at IS NULL
