-- Login codes in flight or recently exchanged, shared by every node: a retried code logs the same
-- user in on any node, with one jscode2session call per code across the cluster. Keyed by the hex
-- SHA-256 of the AppID and the code (the code itself is never stored). `openid` is NULL while the
-- node that claimed the code is still asking WeChat; `expires_at` (unix seconds) bounds both that
-- wait and the replay window (WXLOGIN_CODE_REPLAY_WINDOW).
CREATE TABLE IF NOT EXISTS wx_code_replay (
    code_hash  CHAR(64)     NOT NULL PRIMARY KEY,
    openid     VARCHAR(128) NULL,
    unionid    VARCHAR(128) NULL,
    created_at BIGINT       NOT NULL,
    expires_at BIGINT       NOT NULL,
    KEY idx_wx_code_replay_expires (expires_at),
    KEY idx_wx_code_replay_openid (openid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
