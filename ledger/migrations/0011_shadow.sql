-- Shadow evaluation of the model registry's versions (docs/models.md).
--
-- Which version is evaluated in shadow: the version of the latest row (0: none).
-- seq numbers the rows from 1; each row is also in the audit trail (event id '').
CREATE TABLE model_shadows (
    seq        INTEGER PRIMARY KEY,
    version    INTEGER NOT NULL,          -- 0 stops the evaluation
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- One row per decision a shadowed version saw: what the active version and the
-- candidate predicted and chose, recorded with the decision. The outcome is the
-- event's attempt's; the row goes when retention prunes the event.
CREATE TABLE shadow_predictions (
    event_id         TEXT PRIMARY KEY REFERENCES events (event_id),
    version          INTEGER NOT NULL,           -- the candidate
    active_version   INTEGER NOT NULL,           -- the version that decided
    active_retry     INTEGER NOT NULL,           -- 0 or 1
    p_active         DOUBLE PRECISION NOT NULL,  -- the active's P(success) of its choice
    p_candidate      DOUBLE PRECISION NOT NULL,  -- the candidate's P(success) of that choice
    active_cost      DOUBLE PRECISION NOT NULL,  -- the active's expected cost of its choice
    candidate_retry  INTEGER NOT NULL,           -- 0 or 1
    candidate_p      DOUBLE PRECISION NOT NULL,  -- the candidate's P(success) of its own choice
    candidate_cost   DOUBLE PRECISION NOT NULL,  -- the candidate's expected cost of its own choice
    changed          INTEGER NOT NULL,           -- 0 or 1
    error            TEXT NOT NULL DEFAULT '',   -- the candidate decided nothing: why
    created_at       BIGINT NOT NULL
);
CREATE INDEX shadow_predictions_version ON shadow_predictions (version, active_version, created_at);
