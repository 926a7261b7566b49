-- The messages sent to webhooks about the fixes that wait for review (package
-- notify): one row per webhook, remediation and kind of message (pending, escalated,
-- ended), so that each is sent once whichever replica leads, and after a restart.
-- The row is the message's outbox and its delivery record: the body as built (never
-- a secret: notify builds it from the remediation's summary), its status (queued,
-- delivered, failed, superseded), how many attempts, the next one's time, and the
-- last answer. Pruned with its remediation.
CREATE TABLE deliveries (
    webhook     TEXT NOT NULL,
    event_id    TEXT NOT NULL REFERENCES events (event_id),
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT NOT NULL,
    http_status INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    -- 1 until the webhook's ended message about the review is recorded (sent or
    -- not): the open pending rows are the reviews whose end is still to be told.
    open        INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (webhook, event_id, kind)
);
CREATE INDEX deliveries_open ON deliveries (webhook, open, kind);
CREATE INDEX deliveries_due ON deliveries (webhook, status, next_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
