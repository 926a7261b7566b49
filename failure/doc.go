// Package failure holds autofix's domain types: the FailureEvent that describes a
// failed job (its identity, resources, tunable parameters and the signals the cluster
// reported), the failure taxonomy (categories and remediation actions) and the
// classification of a failure.
//
// It is the leaf of the project: it imports nothing of autofix, only the standard
// library and apimachinery's resource package, whose parser reads Kubernetes quantity
// strings. It owns the version-1 wire format of FailureEvent (Decode and
// Event.MarshalJSON) so that every entry point — Kafka, HTTP, files, the simulator —
// accepts and rejects exactly the same events.
//
// It does not classify, predict, decide or perform I/O.
package failure
