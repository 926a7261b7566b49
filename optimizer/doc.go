// Package optimizer chooses the configuration of a retry. It enumerates candidates
// from a search space (memory steps between a floor and a cap; GPU models and counts
// from the catalogue; the tunables a job declares, such as a smaller micro-batch with
// more gradient accumulation so that the global batch is unchanged; a longer deadline;
// another node), drops the infeasible ones (filters), scores the rest on each objective
// (scorers: probability of failure, expected cost, runtime), keeps the Pareto front and
// picks one point from it (a chooser: the cheapest option above a target probability
// of success, or a weighted sum).
//
// Adding an objective is adding a Scorer; adding a constraint is adding a Filter.
// Predictions come from a Predictor the caller supplies; the package imports nothing of
// autofix beyond the domain types and does no I/O.
package optimizer
