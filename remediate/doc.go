// Package remediate is autofix's side of Kubernetes (client-go): the watcher that turns
// failed Jobs, Pods that never start and stuck Deployments into FailureEvents, the
// submitter that re-creates a failed Job as a new attempt with the chosen
// configuration, the tracker that reports how those attempts end, and leader election
// so that only one replica acts. Each workload kind is an Adapter (Jobs, JobSets)
// that watches, verifies and re-creates its kind; Adapters routes events by kind.
//
// It does not decide anything (the recommender and the policy do) and does not record
// anything itself: it declares the small interfaces it needs (Publisher, OutcomeSink,
// UsageSource) and the service wires them to Kafka, the ledger and Prometheus.
package remediate
