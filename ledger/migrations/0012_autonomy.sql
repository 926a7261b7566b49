-- Graduated autonomy: the grants that let a kind of fix (a failure category on one
-- job template) apply without review, and their revocations. One row per change,
-- seq numbering them from 1; a kind's state is its latest row. Each row is also in
-- the audit trail (event_id ''). Not pruned: changes are few, and the record of who
-- let what act on its own is kept.
CREATE TABLE autonomy (
    seq          INTEGER PRIMARY KEY,
    category     TEXT NOT NULL,
    template_key TEXT NOT NULL,               -- namespace + '/' + template
    action       TEXT NOT NULL,               -- grant or revoke
    forced       INTEGER NOT NULL DEFAULT 0,  -- 1: granted past thresholds it did not meet
    grant_seq    INTEGER NOT NULL DEFAULT 0,  -- for a revoke, the grant it ends
    actor        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    evidence     TEXT NOT NULL DEFAULT '',    -- the figures it was decided on, as JSON
    created_at   BIGINT NOT NULL
);
CREATE INDEX autonomy_kind ON autonomy (category, template_key, seq);
