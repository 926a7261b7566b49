-- People's corrections of a remediation's classification: the category and retry
-- decision an approver says the failure really had, who said so and when. One row per
-- correction, seq numbering those of one remediation from 1; the highest is in force
-- (a later correction supersedes an earlier one, which stays, as in the audit trail).
-- They label the remediation's event for training (autofix ledger corrections).
CREATE TABLE corrections (
    event_id   TEXT NOT NULL REFERENCES events (event_id),
    seq        INTEGER NOT NULL,
    category   TEXT NOT NULL,
    retryable  INTEGER NOT NULL,   -- 0 or 1
    actor      TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, seq)
);
CREATE INDEX corrections_created ON corrections (created_at);
