-- The ledger's schema. Portable SQL: it runs unchanged on SQLite and PostgreSQL.
-- Times are unix nanoseconds (BIGINT), 0 when unset.

-- One row per Kafka message: a failure event, or a rejected (malformed) message.
CREATE TABLE events (
    event_id            TEXT PRIMARY KEY,
    namespace           TEXT NOT NULL DEFAULT '',
    job_name            TEXT NOT NULL DEFAULT '',
    template            TEXT NOT NULL DEFAULT '',
    template_key        TEXT NOT NULL DEFAULT '',   -- namespace + '/' + template
    kind                TEXT NOT NULL DEFAULT '',
    chain_id            TEXT NOT NULL DEFAULT '',
    attempt             INTEGER NOT NULL DEFAULT 0, -- the failed run's attempt number
    category            TEXT NOT NULL DEFAULT '',
    confidence          DOUBLE PRECISION NOT NULL DEFAULT 0,
    state               TEXT NOT NULL,
    reason              TEXT NOT NULL DEFAULT '',
    error               TEXT NOT NULL DEFAULT '',
    event_json          TEXT,                       -- NULL for a rejected message
    recommendation_json TEXT,                       -- NULL for a rejected message
    received_at         BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    kafka_topic         TEXT NOT NULL DEFAULT '',
    kafka_partition     INTEGER NOT NULL DEFAULT 0,
    kafka_offset        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX events_state_received ON events (state, received_at);
CREATE INDEX events_received ON events (received_at, event_id);
CREATE INDEX events_template ON events (template_key);
CREATE INDEX events_chain ON events (chain_id);

-- One row per re-submission of a job chain (the original run is attempt 1).
CREATE TABLE attempts (
    chain_id     TEXT NOT NULL,
    number       INTEGER NOT NULL,
    event_id     TEXT NOT NULL REFERENCES events (event_id),
    job_name     TEXT NOT NULL,
    resources    TEXT NOT NULL,                 -- failure.Resources as JSON
    params       TEXT NOT NULL,                 -- map[string]string as JSON
    submitted_at BIGINT NOT NULL DEFAULT 0,
    outcome      TEXT NOT NULL DEFAULT '',      -- '', succeeded, failed or abandoned
    finished_at  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, number)
);
CREATE UNIQUE INDEX attempts_job_name ON attempts (job_name);
CREATE INDEX attempts_event ON attempts (event_id);

-- Who or what did what to a remediation; event_id '' holds settings changes.
-- seq numbers the rows of one event_id from 1.
CREATE TABLE audit (
    event_id   TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    from_state TEXT NOT NULL DEFAULT '',
    to_state   TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (event_id, seq)
);

-- The last outcome sequence number of each template; the row is the lock that
-- orders concurrent writers of one template's history.
CREATE TABLE template_seq (
    template_key TEXT PRIMARY KEY,
    seq          BIGINT NOT NULL
);

-- The history of each template: one row per finished run, seq dense from 1.
CREATE TABLE outcomes (
    template_key TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    event_id     TEXT NOT NULL REFERENCES events (event_id),
    attempt      INTEGER NOT NULL,
    succeeded    INTEGER NOT NULL,              -- 0 or 1
    category     TEXT NOT NULL DEFAULT '',
    recorded_at  BIGINT NOT NULL,
    outcome      TEXT NOT NULL,                 -- failure.Outcome as JSON
    PRIMARY KEY (template_key, seq)
);

-- Settings shared by replicas, e.g. name 'paused', value '1' or '0'.
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);
