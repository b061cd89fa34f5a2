-- Content moderation of avatars (issue 13). One row per user who uploaded an avatar: the image
-- they show (`active_hash`, whose URL is wxuser.avatar) and at most one waiting for WeChat's
-- verdict (`pending_hash`, with `pending_url`, the URL it gets once it passes). `state` is
-- 'active', 'pending' or 'rejected' (the last upload was refused; the active image stays).
-- A pending check is reached by WeChat through `media_token` (the unguessable /media/ URL,
-- valid until `media_expires_at`) and its verdict comes back with `trace_id`. `submitted_at`
-- and `attempts` drive resubmission of checks WeChat never answered. Times are unix seconds.
-- An image in `avatar` that no row names (active or pending) is deleted.
CREATE TABLE wx_user_avatar (
    openid           TEXT    NOT NULL PRIMARY KEY,
    active_hash      TEXT    NULL,
    pending_hash     TEXT    NULL,
    pending_url      TEXT    NULL,
    state            TEXT    NOT NULL,
    media_token      TEXT    NULL,
    media_expires_at INTEGER NULL,
    trace_id         TEXT    NULL,
    submitted_at     INTEGER NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX idx_wx_user_avatar_active ON wx_user_avatar (active_hash);
CREATE INDEX idx_wx_user_avatar_pending ON wx_user_avatar (pending_hash);
CREATE UNIQUE INDEX idx_wx_user_avatar_token ON wx_user_avatar (media_token);
CREATE UNIQUE INDEX idx_wx_user_avatar_trace ON wx_user_avatar (trace_id);
CREATE INDEX idx_wx_user_avatar_submitted ON wx_user_avatar (state, submitted_at);
-- WeChat's verdicts on images, by the SHA-256 of the stored bytes: an image that passed is
-- published at once next time, a risky one refused at upload. `suggest` is pass, risky or review.
CREATE TABLE wx_media_verdict (
    hash       TEXT    NOT NULL PRIMARY KEY,
    suggest    TEXT    NOT NULL,
    decided_at INTEGER NOT NULL
);
-- Users whose avatar is an image uploaded before this migration keep it as their active one.
INSERT INTO wx_user_avatar (openid, active_hash, state, updated_at)
SELECT user_id, substr(avatar, instr(avatar, '/avatars/') + 9, 64), 'active', 0
FROM wxuser
WHERE instr(avatar, '/avatars/') > 0
  AND substr(avatar, instr(avatar, '/avatars/') + 9, 64) IN (SELECT hash FROM avatar);
-- Images nobody shows any more (replaced uploads, which were never deleted before) go now.
DELETE FROM avatar WHERE hash NOT IN (SELECT active_hash FROM wx_user_avatar WHERE active_hash IS NOT NULL);
