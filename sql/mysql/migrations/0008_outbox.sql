-- The webhook outbox: each event is written in the same transaction as the change it reports
-- (only when WXLOGIN_WEBHOOK_URL is set) and delivered by the webhook worker. `body` is the exact
-- JSON POSTed; the delivery columns belong to the worker.
CREATE TABLE IF NOT EXISTS wx_outbox (
    seq             BIGINT       NOT NULL AUTO_INCREMENT,
    event_id        CHAR(32)     CHARACTER SET ascii NOT NULL,
    uid             CHAR(32)     CHARACTER SET ascii NOT NULL,
    type            VARCHAR(32)  CHARACTER SET ascii NOT NULL,
    created_at      BIGINT       NOT NULL,
    body            TEXT         NOT NULL,
    attempts        INT          NOT NULL DEFAULT 0,
    next_attempt_at BIGINT       NOT NULL,
    delivered_at    BIGINT       NULL,
    locked_by       VARCHAR(64)  NULL,
    locked_until    BIGINT       NULL,
    last_error      VARCHAR(255) NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY uq_wx_outbox_event_id (event_id),
    KEY idx_wx_outbox_due (delivered_at, next_attempt_at),
    KEY idx_wx_outbox_uid (uid, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
