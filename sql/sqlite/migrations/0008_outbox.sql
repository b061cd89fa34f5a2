-- The webhook outbox: each event is written in the same transaction as the change it reports
-- (only when WXLOGIN_WEBHOOK_URL is set) and delivered by the webhook worker. `body` is the exact
-- JSON POSTed; the delivery columns belong to the worker.
CREATE TABLE wx_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    uid             TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    body            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER NULL,
    locked_by       TEXT    NULL,
    locked_until    INTEGER NULL,
    last_error      TEXT    NULL
);
CREATE INDEX idx_wx_outbox_due ON wx_outbox (delivered_at, next_attempt_at);
CREATE INDEX idx_wx_outbox_uid ON wx_outbox (uid, seq);
