package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// Pods are the pod-safety switches: what a pod template autofix creates (a pipeline
// stage's Job or Deployment, a re-submitted Job) may ask of the node it runs on. The
// zero value refuses every class; each switch allows one class. Package podsafety
// checks pod specs against them.
type Pods struct {
	// AllowPrivileged allows privileged containers, allowPrivilegeEscalation: true,
	// procMount: Unmasked, Windows host-process containers, any added capability,
	// seccomp or AppArmor profiles other than RuntimeDefault or Localhost (fields and
	// legacy annotations), SELinux types other than the container ones or a user or
	// role, sysctls outside the safe set, and probe or lifecycle hosts.
	AllowPrivileged bool `yaml:"allowPrivileged"`
	// AllowHostPath allows hostPath volumes.
	AllowHostPath bool `yaml:"allowHostPath"`
	// AllowHostNamespaces allows hostNetwork, hostPID and hostIPC.
	AllowHostNamespaces bool `yaml:"allowHostNamespaces"`
	// AllowHostPorts allows container ports bound on the node (hostPort).
	AllowHostPorts bool `yaml:"allowHostPorts"`
	// AllowedCapabilities are the Linux capabilities a container may add without
	// AllowPrivileged, e.g. NET_BIND_SERVICE (names without the CAP_ prefix; none by
	// default).
	AllowedCapabilities []string `yaml:"allowedCapabilities,omitempty"`
}

var capabilityRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// Validate reports the first problem, naming the field under policy.pods.
func (p *Pods) Validate() error {
	for i, c := range p.AllowedCapabilities {
		field := fmt.Sprintf("policy.pods.allowedCapabilities[%d]", i)
		switch n := CapabilityName(c); {
		case n == "ALL":
			return fmt.Errorf("%s: %q: ALL is every capability; set policy.pods.allowPrivileged instead", field, c)
		case !capabilityRE.MatchString(n):
			return fmt.Errorf("%s: %q, want a capability name such as NET_BIND_SERVICE", field, c)
		}
	}
	return nil
}

// CapabilityName is a capability's canonical name: upper case, without the CAP_
// prefix (container runtimes accept both "net_admin" and "CAP_NET_ADMIN").
func CapabilityName(c string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
}
