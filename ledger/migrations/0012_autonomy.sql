-- Graduated autonomy: the grants that let a kind of fix (a failure category on one
-- job template, for one kind of workload) apply without review, and their
-- revocations. One row per change, seq numbering them from 1; a kind's state is its
-- latest row. Each row is also in the audit trail (event_id ''), where retention
-- prunes it with the other settings' lines; this table is not pruned: changes are
-- few, and the record of who let what act on its own is kept.
CREATE TABLE autonomy (
    seq          INTEGER PRIMARY KEY,
    category     TEXT NOT NULL,
    template_key TEXT NOT NULL,               -- namespace + '/' + template
    job_kind     TEXT NOT NULL,               -- training, compression, deployment or batch
    action       TEXT NOT NULL,               -- grant or revoke
    forced       INTEGER NOT NULL DEFAULT 0,  -- 1: granted past thresholds it did not meet
    grant_seq    INTEGER NOT NULL DEFAULT 0,  -- for a revoke, the grant it ends
    actor        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    evidence     TEXT NOT NULL DEFAULT '',    -- the figures it was decided on, as JSON
    created_at   BIGINT NOT NULL
);
CREATE INDEX autonomy_kind ON autonomy (category, template_key, job_kind, seq);

-- The grant (its seq) that applied a fix the rules would have kept for review; 0 for
-- every other fix. The automatic revocation watches these fixes only, not those the
-- rules apply anyway. The index holds only the fixes a grant applied.
ALTER TABLE events ADD COLUMN autonomy_grant BIGINT NOT NULL DEFAULT 0;
CREATE INDEX events_autonomy_grant ON events (autonomy_grant, event_id) WHERE autonomy_grant <> 0;

-- 1 when the attempt runs another configuration than the recommendation's chosen
-- option (an approver edited it or picked another option): such an approval is not
-- one of the recommendation, and its outcome is not the recommendation's. -1: not
-- known yet, for attempts approved before this column; the ledger works it out from
-- the recommendation when it opens (Open).
ALTER TABLE attempts ADD COLUMN edited INTEGER NOT NULL DEFAULT 0;
UPDATE attempts SET edited = -1
    WHERE EXISTS (SELECT 1 FROM audit d WHERE d.event_id = attempts.event_id AND d.action = 'approve');
