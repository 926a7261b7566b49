-- A random token per attempt, written on the Job autofix creates for it: a Job that
-- carries autofix's labels and the remediation's annotation (anyone can copy those)
-- but not the token is not the attempt. Attempts recorded before get one when the
-- ledger opens if they have not been submitted yet (Open); those submitted keep ''
-- (their Jobs carry no token) and are recognised by their labels, as before.
ALTER TABLE attempts ADD COLUMN token TEXT NOT NULL DEFAULT '';
