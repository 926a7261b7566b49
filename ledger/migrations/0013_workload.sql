-- The workload's API kind of each failure (JobSet, RayJob, Workflow; '' for a batch
-- Job), and of each change of autonomy: a kind of fix names it, so that a grant
-- earned by a template's Jobs does not apply to a JobSet of the same template
-- (issue 15). A failure recorded before this column is named from its event's id,
-- which its watcher gives it (remediate.EventKind): a JobSet's or a RayJob's record
-- must not count towards a batch Job's grant. Every change of autonomy made before
-- it was a batch Job's (grants applied to Jobs only).
ALTER TABLE events ADD COLUMN workload TEXT NOT NULL DEFAULT '';
UPDATE events SET workload = 'JobSet' WHERE event_id LIKE 'k8s-jobset-%';
UPDATE events SET workload = 'RayJob' WHERE event_id LIKE 'k8s-rayjob-%';
UPDATE events SET workload = 'Workflow' WHERE event_id LIKE 'k8s-workflow-%';
ALTER TABLE autonomy ADD COLUMN workload TEXT NOT NULL DEFAULT '';
DROP INDEX autonomy_kind;
CREATE INDEX autonomy_kind ON autonomy (category, template_key, job_kind, workload, seq);
