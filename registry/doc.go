// Package registry is the lifecycle of the retry-success and runtime models (package
// models) that the ledger's model registry records: registering a version with where
// it came from (parent, training data window and source, the code that registered
// it, its held-out metrics), promoting one to be the active version behind gates
// that score it against the active one on the same recorded retries, rolling back
// to an earlier one, and following the active version on every replica.
//
// The gates: enough retries with known outcomes scored, calibration no worse
// (expected calibration error at most the active's plus a margin) and log-loss
// better than the active's, both versions' P(success) computed for the same
// decisions — each retry's failure, classification and template history as its
// decision saw them, and the option it ran — on the retries received after either
// version's training data. An admin may promote past failed gates only by forcing,
// with a reason; every promotion and rollback is recorded with its figures and who
// made it.
//
// It does not train models (autofix train does), decide anything about a failure,
// serve HTTP or hold the schema: the ledger keeps the versions and promotions, and
// refuses what would corrupt the record. Registry says what may be recorded and
// computes the figures.
package registry
