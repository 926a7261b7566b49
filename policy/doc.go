// Package policy decides what autofix may do on its own: which recommended fixes apply
// automatically, which wait for a person, and which are refused (not retryable, or
// over a budget). It is pure: it takes a recommendation and what the caller knows of
// the job chain and returns a Decision. A kind of fix (a category on one template)
// an admin granted autonomy applies on its own where the rules would keep it for
// review; the thresholds of graduated autonomy are configured here (Autonomy) and
// applied by package autonomy. It does not record the decision (the ledger does) and
// does not act on it (the dispatcher does, honouring dry-run and the rate limit).
package policy
