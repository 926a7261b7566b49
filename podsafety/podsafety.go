package podsafety

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/autofix/autofix/policy"
)

// The switches of policy.Pods, as named in the config.
const (
	SwitchPrivileged     = "policy.pods.allowPrivileged"
	SwitchHostPath       = "policy.pods.allowHostPath"
	SwitchHostNamespaces = "policy.pods.allowHostNamespaces"
	SwitchHostPorts      = "policy.pods.allowHostPorts"
	SwitchCapabilities   = "policy.pods.allowedCapabilities"
)

// Violation is one field of a pod spec the policy refuses.
type Violation struct {
	// Field is the field's path, e.g.
	// "stages[2].deploy.template.spec.containers[0].securityContext.privileged".
	Field string
	// Value is what the spec asks for, as written in a manifest.
	Value string
	// Switch is the policy setting that would allow it (one of the Switch constants).
	Switch string
}

// String is the violation as a message: the field, what it asks for, the switch.
func (v Violation) String() string {
	if v.Switch == SwitchCapabilities {
		return fmt.Sprintf("%s: %s is refused (not in %s, and %s is off)", v.Field, v.Value, SwitchCapabilities, SwitchPrivileged)
	}
	return fmt.Sprintf("%s: %s is refused (%s is off)", v.Field, v.Value, v.Switch)
}

// Error is a pod spec the policy refuses: every refused field, in the order of the spec.
type Error struct {
	Violations []Violation
}

// maxListed bounds how many violations Error's message lists.
const maxListed = 5

// Error lists the first violations (at most 5, then how many more).
func (e *Error) Error() string {
	n := min(len(e.Violations), maxListed)
	parts := make([]string, 0, n+1)
	for _, v := range e.Violations[:n] {
		parts = append(parts, v.String())
	}
	if more := len(e.Violations) - n; more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(parts, "; ")
}

// Check reports the fields of spec that p refuses, as an *Error whose fields are named
// by their path under path (the spec's own path, e.g. "spec.template.spec"); nil when
// p allows all of spec. A spec that is part of a pod template should be checked with
// CheckTemplate, which also reads the template's annotations.
func Check(spec *corev1.PodSpec, path string, p policy.Pods) error {
	c := newChecker(p)
	c.pod(spec, path)
	return c.result()
}

// CheckTemplate is Check for a pod template: its spec, and the annotations of its
// metadata that loosen a container's confinement (the legacy AppArmor and seccomp
// ones). path is the template's own path (e.g. "spec.template"); the spec's fields
// are named under path+".spec", the annotations under path+".metadata.annotations".
func CheckTemplate(tmpl *corev1.PodTemplateSpec, path string, p policy.Pods) error {
	c := newChecker(p)
	c.annotations(tmpl.Annotations, path+".metadata.annotations")
	c.pod(&tmpl.Spec, path+".spec")
	return c.result()
}

func newChecker(p policy.Pods) *checker {
	c := &checker{p: p, allowedCaps: map[string]bool{}}
	for _, name := range p.AllowedCapabilities {
		c.allowedCaps[policy.CapabilityName(name)] = true
	}
	return c
}

func (c *checker) result() error {
	if len(c.found) == 0 {
		return nil
	}
	return &Error{Violations: c.found}
}

type checker struct {
	p           policy.Pods
	allowedCaps map[string]bool
	found       []Violation
}

func (c *checker) refuse(allowed bool, field, value, sw string) {
	if !allowed {
		c.found = append(c.found, Violation{Field: field, Value: value, Switch: sw})
	}
}

func (c *checker) pod(spec *corev1.PodSpec, path string) {
	if spec.HostNetwork {
		c.refuse(c.p.AllowHostNamespaces, path+".hostNetwork", "true", SwitchHostNamespaces)
	}
	if spec.HostPID {
		c.refuse(c.p.AllowHostNamespaces, path+".hostPID", "true", SwitchHostNamespaces)
	}
	if spec.HostIPC {
		c.refuse(c.p.AllowHostNamespaces, path+".hostIPC", "true", SwitchHostNamespaces)
	}
	if sc := spec.SecurityContext; sc != nil {
		if hostProcess(sc.WindowsOptions) {
			c.refuse(c.p.AllowPrivileged, path+".securityContext.windowsOptions.hostProcess", "true", SwitchPrivileged)
		}
		c.podConfinement(path+".securityContext", sc)
	}
	for i := range spec.Volumes {
		if hp := spec.Volumes[i].HostPath; hp != nil {
			c.refuse(c.p.AllowHostPath, fmt.Sprintf("%s.volumes[%d].hostPath", path, i), quote(hp.Path), SwitchHostPath)
		}
	}
	for i := range spec.InitContainers {
		c.container(fmt.Sprintf("%s.initContainers[%d]", path, i), &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		c.container(fmt.Sprintf("%s.containers[%d]", path, i), &spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		// An ephemeral container has a container's fields (the same struct, under
		// another name).
		k := (*corev1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon)
		c.container(fmt.Sprintf("%s.ephemeralContainers[%d]", path, i), k)
	}
}

func (c *checker) container(path string, k *corev1.Container) {
	for i, port := range k.Ports {
		if port.HostPort != 0 {
			c.refuse(c.p.AllowHostPorts, fmt.Sprintf("%s.ports[%d].hostPort", path, i), strconv.Itoa(int(port.HostPort)), SwitchHostPorts)
		}
	}
	c.probeHosts(path, k)
	sc := k.SecurityContext
	if sc == nil {
		return
	}
	path += ".securityContext"
	c.confinement(path, sc.SeccompProfile, sc.AppArmorProfile, sc.SELinuxOptions)
	if sc.Privileged != nil && *sc.Privileged {
		c.refuse(c.p.AllowPrivileged, path+".privileged", "true", SwitchPrivileged)
	}
	if sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation {
		c.refuse(c.p.AllowPrivileged, path+".allowPrivilegeEscalation", "true", SwitchPrivileged)
	}
	if sc.ProcMount != nil && *sc.ProcMount == corev1.UnmaskedProcMount {
		c.refuse(c.p.AllowPrivileged, path+".procMount", string(corev1.UnmaskedProcMount), SwitchPrivileged)
	}
	if hostProcess(sc.WindowsOptions) {
		c.refuse(c.p.AllowPrivileged, path+".windowsOptions.hostProcess", "true", SwitchPrivileged)
	}
	if sc.Capabilities == nil {
		return
	}
	for i, cp := range sc.Capabilities.Add {
		ok := c.p.AllowPrivileged || c.allowedCaps[policy.CapabilityName(string(cp))]
		c.refuse(ok, fmt.Sprintf("%s.capabilities.add[%d]", path, i), quote(string(cp)), SwitchCapabilities)
	}
}

func hostProcess(w *corev1.WindowsSecurityContextOptions) bool {
	return w != nil && w.HostProcess != nil && *w.HostProcess
}

// quote quotes a value taken from the spec for a message, cut to 64 bytes.
func quote(s string) string { return quoteCut(s, 64) }

// quoteCut quotes s, cut to n bytes.
func quoteCut(s string, n int) string {
	if len(s) > n {
		return strconv.Quote(s[:n]) + "..."
	}
	return strconv.Quote(s)
}
