-- Submission claims: a dispatcher claims an approved attempt before submitting it, so
-- that two replicas never submit the same one, and a failed submission is retried no
-- sooner than claimed_until (the claim doubles as the backoff schedule).
ALTER TABLE attempts ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE attempts ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN submit_failures INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attempts_claimable ON attempts (claimed_until);
