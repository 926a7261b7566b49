// Package pipeline drives ML pipelines on Kubernetes: train (a Job), compress (a Job
// that prunes or quantises the trained model) and deploy (a Deployment of an
// inference server, with a canary first and a rollback when the rollout is
// unhealthy), passing artifact URIs from stage to stage.
//
// A failed Job stage is remediated like any other failed Job — the watcher reports
// it, the recommender and the policy decide, the dispatcher re-submits it under the
// same pipeline labels — and the driver follows the chain to its end. The driver
// keeps no state of its own: everything it needs after a restart is on the cluster
// (labels, annotations) and in the ledger, so a restarted driver neither loses a
// stage nor starts one twice.
//
// It acts only on what it owns: every object it creates carries the label
// autofix.io/managed=true and the annotation autofix.io/pipeline-run, and a
// Deployment or Job that lacks them is never updated, scaled, deleted or followed —
// the stage fails naming it. Pod templates are checked against the policy's
// pod-safety switches (package podsafety) before anything is created. It does not
// decide what a failed stage's next attempt is (remediation does).
package pipeline
