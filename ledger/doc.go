// Package ledger is the durable record of autofix: every failure event received from
// Kafka (valid or rejected), its classification and recommendation, the policy's
// decision, the remediation attempts of each job chain and their outcomes, the outcome
// history of each job template, an audit trail of who or what decided, people's
// corrections of classifications (labelled examples for training), the settings
// replicas share (the kill switch), and the model registry: the versions of the retry
// models with their provenance, and the promotions that made one of them active.
//
// It owns the schema and its migrations, the remediation state machine (which state
// may follow which, see State.CanMoveTo) and the compare-and-set transitions that
// keep replicas from moving the same remediation twice. It stores into SQLite (a
// single file; modernc.org/sqlite, pure Go) or PostgreSQL (pgx), with one schema and
// the same queries on both.
//
// It does not decide anything: it records. Classifying, recommending, the policy's
// verdict, the job to submit and when to give up all come from its callers; the
// ledger only refuses what would corrupt the record (an illegal transition, a move
// from a state the remediation is no longer in, a second attempt with the same
// number or job name). It does not consume Kafka, talk to the cluster or serve HTTP.
package ledger
