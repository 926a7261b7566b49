// Package podsafety checks a pod spec against the policy's pod-safety switches
// (policy.Pods) before autofix creates anything from it: privileged containers,
// privilege escalation, added capabilities, hostPath volumes, the node's network, PID
// and IPC namespaces, and host ports are refused unless a switch allows their class.
// The pipeline driver checks every stage's template with it; re-submission can check
// a Job's template the same way.
//
// It is pure (a spec in, the refused fields out) and does not own the switches' values
// (the policy config does) or what happens to a refused spec (the caller decides). It
// is not an admission controller: Pod Security Admission on the namespaces is the
// cluster's own defence, and this package covers only what autofix itself would ask
// for. It imports nothing of the project but package policy, so any package may use it.
package podsafety
