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
package pipeline
