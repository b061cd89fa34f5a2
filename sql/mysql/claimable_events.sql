-- The outbox events a webhook worker may claim now: due, not leased by a live claim, not given up,
-- and each the oldest event of its user that is neither delivered nor given up, so a user's events
-- go out in order. Binds: now, max attempts (an event with that many is given up), now, max
-- attempts, limit.
SELECT o.seq FROM wx_outbox o
WHERE o.delivered_at IS NULL
  AND o.next_attempt_at <= ?
  AND o.attempts < ?
  AND (o.locked_until IS NULL OR o.locked_until <= ?)
  AND NOT EXISTS (
      SELECT 1 FROM wx_outbox p
      WHERE p.uid = o.uid AND p.seq < o.seq AND p.delivered_at IS NULL AND p.attempts < ?)
ORDER BY o.seq
LIMIT ?
