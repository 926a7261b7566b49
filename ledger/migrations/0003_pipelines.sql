-- Pipeline runs started through the service: the definition each run was started with
-- (so that a restarted service resumes it) and where it stands. The stages themselves
-- are in the cluster, found by their labels.
CREATE TABLE pipeline_runs (
    pipeline   TEXT NOT NULL,
    run        TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    definition TEXT NOT NULL,             -- the pipeline definition as JSON
    phase      TEXT NOT NULL,             -- running, succeeded, failed
    message    TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (pipeline, run)
);
CREATE INDEX pipeline_runs_created ON pipeline_runs (created_at);
