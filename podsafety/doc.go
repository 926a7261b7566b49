// Package podsafety checks a pod spec against the policy's pod-safety switches
// (policy.Pods) before autofix creates anything from it. It refuses, unless a switch
// allows their class, what the baseline Pod Security Standard refuses (as of
// Kubernetes 1.37): privileged containers, privilege escalation, added capabilities,
// an unmasked /proc, Windows host processes, seccomp or AppArmor unconfined (in the
// security contexts, and in a template's legacy annotations), SELinux types other
// than the container ones or with a user or role, sysctls outside the safe set,
// probes and lifecycle handlers aimed at another host, hostPath volumes, the node's
// network, PID and IPC namespaces, and host ports. Its capability rule is stricter
// than the baseline's: no capability is added without a switch.
//
// Check takes a pod spec; CheckTemplate takes a pod template and also reads its
// annotations. The pipeline driver checks every stage's template; re-submission
// checks a Job's template the same way.
//
// It is pure (a spec in, the refused fields out) and does not own the switches' values
// (the policy config does) or what happens to a refused spec (the caller decides). It
// is not an admission controller: Pod Security Admission on the namespaces is the
// cluster's own defence, and this package covers only what autofix itself would ask
// for. It imports nothing of the project but package policy, so any package may use it.
package podsafety
