-- An attempt's job lives in its chain's namespace, and job names are unique per
-- namespace only: two namespaces may each have a Job of the same name, and their fixes
-- must not collide. The namespace is copied from the attempt's event.
ALTER TABLE attempts ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
UPDATE attempts SET namespace = COALESCE((SELECT e.namespace FROM events e WHERE e.event_id = attempts.event_id), '');
DROP INDEX attempts_job_name;
CREATE UNIQUE INDEX attempts_job ON attempts (namespace, job_name);
-- The whole option an attempt runs with (deadline, nodes to avoid, delay, what it
-- changes), as JSON: an approver who picks another option gets all of it. '' for
-- attempts recorded before, which ran with the recommendation's chosen option.
ALTER TABLE attempts ADD COLUMN option_json TEXT NOT NULL DEFAULT '';
