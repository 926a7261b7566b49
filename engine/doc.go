// Package engine is the autofix loop between Kafka and the cluster. Intake is the
// ingest.Handler: it decodes each message, recognises events the ledger already holds,
// asks the recommender and the policy, and records every outcome — decisions and
// rejected messages alike — in one ledger transaction per batch. Dispatcher takes the
// approved remediations from the ledger and submits them through a Remediator,
// honouring the kill switch, dry-run and the rate limit.
//
// Recording a decision and acting on it are separate on purpose (an outbox): a
// cluster that cannot be reached delays submissions but never stalls consumption, and
// a crash between the two leaves an approved remediation that is submitted after the
// restart, once, because submissions are idempotent.
//
// engine does not speak Kafka or SQL itself and decides nothing of its own.
package engine
