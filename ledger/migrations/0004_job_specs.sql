-- The specs of failed Jobs, as the watcher last saw them, so that a fix can still be
-- submitted when the Job is gone before it (a TTL of 0, a person deleting it). Keyed
-- by the Job's uid: a later Job of the same name is another Job. Kept a week.
CREATE TABLE job_specs (
    uid         TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,   -- the Job as JSON
    recorded_at BIGINT NOT NULL
);
CREATE INDEX job_specs_recorded ON job_specs (recorded_at);
