-- The model registry: every version of the retry-success and runtime models (the
-- models package's JSON artifact) autofix may run with, numbered from 1 in the order
-- they were registered, and the promotions that made one of them the active version
-- every replica runs. Neither is pruned: a version is small (at most 1 MiB) and
-- stays available to roll back to.
CREATE TABLE models (
    version       INTEGER PRIMARY KEY,
    parent        INTEGER NOT NULL DEFAULT 0,  -- the version it derives from; 0: none
    name          TEXT NOT NULL,               -- the artifact's name
    source        TEXT NOT NULL,               -- what it was trained on: simulator, ledger or mixed
    data_from     BIGINT NOT NULL DEFAULT 0,   -- the ledger's failures it was trained on were
    data_to       BIGINT NOT NULL DEFAULT 0,   -- received from data_from to data_to (0: none)
    code_version  TEXT NOT NULL,               -- the VCS revision of the autofix that registered it
    eval_n        INTEGER NOT NULL DEFAULT 0,  -- its P(success) on the retries held out from
    eval_positive INTEGER NOT NULL DEFAULT 0,  -- its training: how many, how many succeeded,
    auc           DOUBLE PRECISION NOT NULL DEFAULT 0,
    brier         DOUBLE PRECISION NOT NULL DEFAULT 0,
    log_loss      DOUBLE PRECISION NOT NULL DEFAULT 0,
    ece           DOUBLE PRECISION NOT NULL DEFAULT 0,
    reliability   TEXT NOT NULL DEFAULT '[]',  -- the reliability table, as JSON
    note          TEXT NOT NULL DEFAULT '',
    registered_by TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    size          INTEGER NOT NULL,            -- of content, in bytes
    sha256        TEXT NOT NULL,               -- of content, hex
    content       TEXT NOT NULL                -- the artifact
);
CREATE UNIQUE INDEX models_sha256 ON models (sha256);

-- Which version is active: the to_version of the latest row. seq numbers the rows
-- from 1; the first activates the first version registered. Each row is also in the
-- audit trail (event_id '').
CREATE TABLE model_promotions (
    seq          INTEGER PRIMARY KEY,
    from_version INTEGER NOT NULL,            -- the version active before; 0: none
    to_version   INTEGER NOT NULL REFERENCES models (version),
    action       TEXT NOT NULL,               -- activate, promote, force or rollback
    actor        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    gates        TEXT NOT NULL DEFAULT '',    -- the gates' figures, as JSON ('' for activate)
    created_at   BIGINT NOT NULL
);
