-- The outcomes of a remediation, looked up by its event id: the review page's
-- savings read what each fix's attempt cost (AttemptOutcomes), and pruning deletes a
-- remediation's outcomes, both without scanning every template's history.
CREATE INDEX outcomes_event ON outcomes (event_id);
