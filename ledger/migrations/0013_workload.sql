-- The workload's API kind of each failure (JobSet, RayJob, Workflow; '' for a batch
-- Job, and for every failure recorded before this column), and of each change of
-- autonomy: a kind of fix names it, so that a grant earned by a template's Jobs does
-- not apply to a JobSet of the same template (issue 15).
ALTER TABLE events ADD COLUMN workload TEXT NOT NULL DEFAULT '';
ALTER TABLE autonomy ADD COLUMN workload TEXT NOT NULL DEFAULT '';
DROP INDEX autonomy_kind;
CREATE INDEX autonomy_kind ON autonomy (category, template_key, job_kind, workload, seq);
