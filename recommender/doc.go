// Package recommender turns a failed job into a Recommendation: it classifies the
// failure (rules first, the learned fallback for what no rule explains), stops at
// failures no retry can fix, and otherwise searches the configurations a retry could
// use — predicting each one's chance of success, runtime and cost with the models —
// and chooses one from the Pareto front of probability of failure against expected
// cost, with a plain-language explanation and the evidence.
//
// It is pure: it reads the event and the history it is given and returns a value. It
// does not apply recommendations (the remediator does) or record them (the ledger does).
package recommender
