package podsafety

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// This file holds the rest of what the baseline Pod Security Standard refuses: a
// container taken out of its seccomp, AppArmor or SELinux confinement, kernel
// parameters shared beyond the pod, and probes the kubelet would send to another
// host. All of it is under allowPrivileged: each gives a container a reach into the
// node (or, through the kubelet, the node's network) that privileged mode also gives.

// safeSysctls are the kernel parameters a pod may set: namespaced to the pod and
// isolated from other pods on the node (the baseline standard's list as of
// Kubernetes 1.37). Names are matched as written.
var safeSysctls = map[string]bool{
	"kernel.shm_rmid_forced":              true,
	"net.ipv4.ip_local_port_range":        true,
	"net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.tcp_syncookies":             true,
	"net.ipv4.ping_group_range":           true,
	"net.ipv4.ip_local_reserved_ports":    true, // 1.27
	"net.ipv4.tcp_keepalive_time":         true, // 1.29
	"net.ipv4.tcp_fin_timeout":            true,
	"net.ipv4.tcp_keepalive_intvl":        true,
	"net.ipv4.tcp_keepalive_probes":       true,
	"net.ipv4.tcp_rmem":                   true, // 1.32
	"net.ipv4.tcp_wmem":                   true,
	"net.ipv4.tcp_slow_start_after_idle":  true, // 1.37
	"net.ipv4.tcp_notsent_lowat":          true,
}

// confinedSELinuxTypes are the SELinux types a container may run as: the
// container runtime's own (empty is the runtime's default).
var confinedSELinuxTypes = map[string]bool{
	"": true, "container_t": true, "container_init_t": true, "container_kvm_t": true, "container_engine_t": true,
}

// podConfinement checks the pod's security context at path: seccomp,
// AppArmor and SELinux for every container, and the sysctls.
func (c *checker) podConfinement(path string, sc *corev1.PodSecurityContext) {
	c.confinement(path, sc.SeccompProfile, sc.AppArmorProfile, sc.SELinuxOptions)
	for i, s := range sc.Sysctls {
		if !safeSysctls[s.Name] {
			c.refuse(c.p.AllowPrivileged, fmt.Sprintf("%s.sysctls[%d].name", path, i), quote(s.Name), SwitchPrivileged)
		}
	}
}

// confinement checks the confinement a security context (the pod's or a
// container's, at path) asks for: seccomp and AppArmor only as the runtime's default
// or a profile on the node (never unconfined), SELinux only as a container type,
// with no user or role of its own.
func (c *checker) confinement(path string, seccomp *corev1.SeccompProfile, apparmor *corev1.AppArmorProfile, selinux *corev1.SELinuxOptions) {
	if seccomp != nil && seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost {
		c.refuse(c.p.AllowPrivileged, path+".seccompProfile.type", quote(string(seccomp.Type)), SwitchPrivileged)
	}
	if apparmor != nil && apparmor.Type != corev1.AppArmorProfileTypeRuntimeDefault && apparmor.Type != corev1.AppArmorProfileTypeLocalhost {
		c.refuse(c.p.AllowPrivileged, path+".appArmorProfile.type", quote(string(apparmor.Type)), SwitchPrivileged)
	}
	if selinux == nil {
		return
	}
	if !confinedSELinuxTypes[selinux.Type] {
		c.refuse(c.p.AllowPrivileged, path+".seLinuxOptions.type", quote(selinux.Type), SwitchPrivileged)
	}
	if selinux.User != "" {
		c.refuse(c.p.AllowPrivileged, path+".seLinuxOptions.user", quote(selinux.User), SwitchPrivileged)
	}
	if selinux.Role != "" {
		c.refuse(c.p.AllowPrivileged, path+".seLinuxOptions.role", quote(selinux.Role), SwitchPrivileged)
	}
}

// probeHosts refuses probes and lifecycle handlers of the container at path that
// name a host: the kubelet would connect to it from the node, not to the pod.
func (c *checker) probeHosts(path string, k *corev1.Container) {
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", k.LivenessProbe}, {"readinessProbe", k.ReadinessProbe}, {"startupProbe", k.StartupProbe}} {
		if p.probe != nil {
			c.handlerHosts(path+"."+p.name, p.probe.HTTPGet, p.probe.TCPSocket)
		}
	}
	if k.Lifecycle == nil {
		return
	}
	if h := k.Lifecycle.PostStart; h != nil {
		c.handlerHosts(path+".lifecycle.postStart", h.HTTPGet, h.TCPSocket)
	}
	if h := k.Lifecycle.PreStop; h != nil {
		c.handlerHosts(path+".lifecycle.preStop", h.HTTPGet, h.TCPSocket)
	}
}

func (c *checker) handlerHosts(path string, http *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) {
	if http != nil && http.Host != "" {
		c.refuse(c.p.AllowPrivileged, path+".httpGet.host", quote(http.Host), SwitchPrivileged)
	}
	if tcp != nil && tcp.Host != "" {
		c.refuse(c.p.AllowPrivileged, path+".tcpSocket.host", quote(tcp.Host), SwitchPrivileged)
	}
}

// maxKey bounds how much of an annotation key a field path quotes.
const maxKey = 128

// annotations checks a pod template's annotations (at path) that the kubelet or the
// API server still read as confinement: the legacy per-container AppArmor profile
// (anything but the runtime's default or a profile on the node) and the legacy
// seccomp profiles of the pod and its containers (likewise). Keys are checked in
// sorted order, so that the violations are always listed the same way.
func (c *checker) annotations(annotations map[string]string, path string) {
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := annotations[k]
		var confined bool
		switch {
		case strings.HasPrefix(k, corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix):
			confined = v == "" || v == corev1.DeprecatedAppArmorBetaProfileRuntimeDefault ||
				strings.HasPrefix(v, corev1.DeprecatedAppArmorBetaProfileNamePrefix)
		case k == corev1.SeccompPodAnnotationKey, strings.HasPrefix(k, corev1.SeccompContainerAnnotationKeyPrefix):
			confined = v == corev1.SeccompProfileRuntimeDefault || v == corev1.DeprecatedSeccompProfileDockerDefault ||
				strings.HasPrefix(v, corev1.SeccompLocalhostProfileNamePrefix)
		default:
			continue
		}
		if !confined {
			c.refuse(c.p.AllowPrivileged, path+"["+quoteCut(k, maxKey)+"]", quote(v), SwitchPrivileged)
		}
	}
}
