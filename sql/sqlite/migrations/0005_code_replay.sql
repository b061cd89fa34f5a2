-- Login codes in flight or recently exchanged, shared by every node: a retried code logs the same
-- user in on any node, with one jscode2session call per code across the cluster. Keyed by the hex
-- SHA-256 of the AppID and the code (the code itself is never stored). `openid` is NULL while the
-- node that claimed the code is still asking WeChat; `expires_at` (unix seconds) bounds both that
-- wait and the replay window (WXLOGIN_CODE_REPLAY_WINDOW).
CREATE TABLE wx_code_replay (
    code_hash  TEXT    NOT NULL PRIMARY KEY,
    openid     TEXT    NULL,
    unionid    TEXT    NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX idx_wx_code_replay_expires ON wx_code_replay (expires_at);
CREATE INDEX idx_wx_code_replay_openid ON wx_code_replay (openid);
