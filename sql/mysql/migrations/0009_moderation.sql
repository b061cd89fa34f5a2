-- Content moderation of avatars (issue 13). One row per user who uploaded an avatar: the image
-- they show (`active_hash`, whose URL is wxuser.avatar) and at most one waiting for WeChat's
-- verdict (`pending_hash`, with `pending_url`, the URL it gets once it passes). `state` is
-- 'active', 'pending' or 'rejected' (the last upload was refused; the active image stays).
-- A pending check is reached by WeChat through `media_token` (the unguessable /media/ URL,
-- valid until `media_expires_at`) and its verdict comes back with `trace_id`. `submitted_at`
-- and `attempts` drive resubmission of checks WeChat never answered. Times are unix seconds.
-- An image in `avatar` that no row names (active or pending) is deleted.
-- IF NOT EXISTS and INSERT IGNORE: a MySQL migration interrupted half-way is run again whole.
CREATE TABLE IF NOT EXISTS wx_user_avatar (
    openid           VARCHAR(128)  NOT NULL,
    active_hash      CHAR(64)      CHARACTER SET ascii NULL,
    pending_hash     CHAR(64)      CHARACTER SET ascii NULL,
    pending_url      VARCHAR(1024) NULL,
    state            VARCHAR(16)   CHARACTER SET ascii NOT NULL,
    media_token      CHAR(64)      CHARACTER SET ascii NULL,
    media_expires_at BIGINT        NULL,
    trace_id         VARCHAR(128)  CHARACTER SET ascii NULL,
    submitted_at     BIGINT        NULL,
    attempts         INT           NOT NULL DEFAULT 0,
    updated_at       BIGINT        NOT NULL,
    PRIMARY KEY (openid),
    KEY idx_wx_user_avatar_active (active_hash),
    KEY idx_wx_user_avatar_pending (pending_hash),
    UNIQUE KEY idx_wx_user_avatar_token (media_token),
    UNIQUE KEY idx_wx_user_avatar_trace (trace_id),
    KEY idx_wx_user_avatar_submitted (state, submitted_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
-- WeChat's verdicts on images, by the SHA-256 of the stored bytes: an image that passed is
-- published at once next time, a risky one refused at upload. `suggest` is pass, risky or review.
CREATE TABLE IF NOT EXISTS wx_media_verdict (
    hash       CHAR(64)    CHARACTER SET ascii NOT NULL,
    suggest    VARCHAR(16) CHARACTER SET ascii NOT NULL,
    decided_at BIGINT      NOT NULL,
    PRIMARY KEY (hash)
) ENGINE=InnoDB;
-- Users whose avatar is an image uploaded before this migration keep it as their active one.
INSERT IGNORE INTO wx_user_avatar (openid, active_hash, state, updated_at)
SELECT user_id, SUBSTRING(avatar, LOCATE('/avatars/', avatar) + 9, 64), 'active', 0
FROM wxuser
WHERE LOCATE('/avatars/', avatar) > 0
  AND CONVERT(SUBSTRING(avatar, LOCATE('/avatars/', avatar) + 9, 64) USING ascii) IN (SELECT hash FROM avatar);
-- Images nobody shows any more (replaced uploads, which were never deleted before) go now.
DELETE FROM avatar WHERE hash NOT IN (SELECT active_hash FROM wx_user_avatar WHERE active_hash IS NOT NULL);
