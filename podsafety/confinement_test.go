package podsafety

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/autofix/autofix/policy"
)

// TestCheckIsolation covers what the baseline Pod Security Standard refuses beyond
// privilege and the host's paths, namespaces and ports: seccomp and AppArmor
// unconfined, custom SELinux labels, unsafe sysctls and probes aimed at other hosts.
// All of it is under allowPrivileged.
func TestCheckIsolation(t *testing.T) {
	const path = "stages[0].job.spec"
	seccomp := func(t corev1.SeccompProfileType) *corev1.SeccompProfile { return &corev1.SeccompProfile{Type: t} }
	apparmor := func(t corev1.AppArmorProfileType) *corev1.AppArmorProfile { return &corev1.AppArmorProfile{Type: t} }
	tests := []struct {
		name string
		edit func(*corev1.PodSpec)
		// want are the refused fields, relative to path; none: allowed.
		want []string
	}{
		{name: "seccomp runtime default and localhost", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = seccomp(corev1.SeccompProfileTypeRuntimeDefault)
			s.Containers[0].SecurityContext.SeccompProfile = seccomp(corev1.SeccompProfileTypeLocalhost)
		}},
		{name: "seccomp unconfined, pod and container", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = seccomp(corev1.SeccompProfileTypeUnconfined)
			s.Containers[0].SecurityContext.SeccompProfile = seccomp(corev1.SeccompProfileTypeUnconfined)
		}, want: []string{".securityContext.seccompProfile.type", ".containers[0].securityContext.seccompProfile.type"}},
		{name: "seccomp of an unknown type", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = seccomp("Nonsense")
		}, want: []string{".securityContext.seccompProfile.type"}},
		{name: "seccomp unconfined, init and ephemeral containers", edit: func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "init", SecurityContext: &corev1.SecurityContext{
				SeccompProfile: seccomp(corev1.SeccompProfileTypeUnconfined)}}}
			s.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", SecurityContext: &corev1.SecurityContext{SeccompProfile: seccomp(corev1.SeccompProfileTypeUnconfined)}}}}
		}, want: []string{".initContainers[0].securityContext.seccompProfile.type", ".ephemeralContainers[0].securityContext.seccompProfile.type"}},
		{name: "AppArmor runtime default and localhost", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.AppArmorProfile = apparmor(corev1.AppArmorProfileTypeRuntimeDefault)
			s.Containers[0].SecurityContext.AppArmorProfile = apparmor(corev1.AppArmorProfileTypeLocalhost)
		}},
		{name: "AppArmor unconfined, pod and every kind of container", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.AppArmorProfile = apparmor(corev1.AppArmorProfileTypeUnconfined)
			s.Containers[0].SecurityContext.AppArmorProfile = apparmor(corev1.AppArmorProfileTypeUnconfined)
			s.InitContainers = []corev1.Container{{Name: "init", SecurityContext: &corev1.SecurityContext{
				AppArmorProfile: apparmor(corev1.AppArmorProfileTypeUnconfined)}}}
			s.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", SecurityContext: &corev1.SecurityContext{AppArmorProfile: apparmor(corev1.AppArmorProfileTypeUnconfined)}}}}
		}, want: []string{".securityContext.appArmorProfile.type", ".initContainers[0].securityContext.appArmorProfile.type",
			".containers[0].securityContext.appArmorProfile.type", ".ephemeralContainers[0].securityContext.appArmorProfile.type"}},
		{name: "SELinux: the container types and a level", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "container_t", Level: "s0:c123,c456"}
			s.Containers[0].SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "container_engine_t"}
			s.InitContainers = []corev1.Container{
				{Name: "a", SecurityContext: &corev1.SecurityContext{SELinuxOptions: &corev1.SELinuxOptions{Type: "container_init_t"}}},
				{Name: "b", SecurityContext: &corev1.SecurityContext{SELinuxOptions: &corev1.SELinuxOptions{Type: "container_kvm_t"}}},
				{Name: "c", SecurityContext: &corev1.SecurityContext{SELinuxOptions: &corev1.SELinuxOptions{}}}}
		}},
		{name: "SELinux: a custom type, a user, a role", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "spc_t"}
			s.Containers[0].SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{User: "system_u", Role: "system_r"}
			s.InitContainers = []corev1.Container{{Name: "init", SecurityContext: &corev1.SecurityContext{
				SELinuxOptions: &corev1.SELinuxOptions{Type: "unconfined_t"}}}}
			s.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", SecurityContext: &corev1.SecurityContext{SELinuxOptions: &corev1.SELinuxOptions{Role: "sysadm_r"}}}}}
		}, want: []string{".securityContext.seLinuxOptions.type", ".initContainers[0].securityContext.seLinuxOptions.type",
			".containers[0].securityContext.seLinuxOptions.user", ".containers[0].securityContext.seLinuxOptions.role",
			".ephemeralContainers[0].securityContext.seLinuxOptions.role"}},
		{name: "safe sysctls", edit: func(s *corev1.PodSpec) {
			for _, n := range []string{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
				"net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
				"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem",
				"net.ipv4.tcp_wmem", "net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"} {
				s.SecurityContext.Sysctls = append(s.SecurityContext.Sysctls, corev1.Sysctl{Name: n, Value: "1"})
			}
		}},
		{name: "unsafe sysctls", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "kernel.msgmax", Value: "65536"},
				{Name: "net.ipv4.tcp_syncookies", Value: "1"}, {Name: "net.core.somaxconn", Value: "1024"},
				{Name: "vm.overcommit_memory", Value: "1"}}
		}, want: []string{".securityContext.sysctls[0].name", ".securityContext.sysctls[2].name", ".securityContext.sysctls[3].name"}},
		{name: "probes and handlers on the pod's own address", edit: func(s *corev1.PodSpec) {
			k := &s.Containers[0]
			k.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}}
			k.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}}
			k.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		}},
		{name: "probes and handlers aimed at another host", edit: func(s *corev1.PodSpec) {
			k := &s.Containers[0]
			k.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "169.254.169.254"}}}
			k.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: "10.0.0.1"}}}
			k.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "kubernetes.default"}}}
			k.Lifecycle = &corev1.Lifecycle{
				PostStart: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: "10.0.0.2"}},
				PreStop:   &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Host: "10.0.0.3"}}}
			s.InitContainers = []corev1.Container{{Name: "init", StartupProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: "10.0.0.4"}}}}}
		}, want: []string{".initContainers[0].startupProbe.tcpSocket.host", ".containers[0].livenessProbe.httpGet.host",
			".containers[0].readinessProbe.tcpSocket.host", ".containers[0].startupProbe.httpGet.host",
			".containers[0].lifecycle.postStart.httpGet.host", ".containers[0].lifecycle.preStop.tcpSocket.host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := safe()
			tt.edit(&spec)
			got := refused(t, Check(&spec, path, policy.Pods{}), path, SwitchPrivileged)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Check refused %q, want %q", got, tt.want)
			}
			// allowPrivileged allows all of it; no other switch allows any of it.
			if err := Check(&spec, path, policy.Pods{AllowPrivileged: true}); err != nil {
				t.Errorf("Check with allowPrivileged = %v, want nil", err)
			}
			others := policy.Pods{AllowHostPath: true, AllowHostNamespaces: true, AllowHostPorts: true, AllowedCapabilities: []string{"SYS_ADMIN"}}
			if got := refused(t, Check(&spec, path, others), path, SwitchPrivileged); !slices.Equal(got, tt.want) {
				t.Errorf("Check with every other switch refused %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCheckTemplate: the template's legacy AppArmor and seccomp annotations are
// checked with its spec, and named under metadata.annotations.
func TestCheckTemplate(t *testing.T) {
	const path = "spec.template"
	apparmorKey := corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix
	tests := []struct {
		name        string
		annotations map[string]string
		privileged  bool
		want        []string
	}{
		{name: "no annotations"},
		{name: "confined", annotations: map[string]string{
			apparmorKey + "train": "runtime/default", apparmorKey + "sidecar": "localhost/k8s-train", apparmorKey + "init": "",
			corev1.SeccompPodAnnotationKey: "runtime/default", corev1.SeccompContainerAnnotationKeyPrefix + "train": "localhost/prof.json",
			corev1.SeccompContainerAnnotationKeyPrefix + "sidecar": "docker/default", "team": "unconfined"}},
		{name: "AppArmor unconfined", annotations: map[string]string{apparmorKey + "train": "unconfined", apparmorKey + "a": "whatever"},
			want: []string{`.metadata.annotations["container.apparmor.security.beta.kubernetes.io/a"]`,
				`.metadata.annotations["container.apparmor.security.beta.kubernetes.io/train"]`}},
		{name: "seccomp unconfined", annotations: map[string]string{corev1.SeccompPodAnnotationKey: "unconfined",
			corev1.SeccompContainerAnnotationKeyPrefix + "train": "unconfined"},
			want: []string{`.metadata.annotations["container.seccomp.security.alpha.kubernetes.io/train"]`,
				`.metadata.annotations["seccomp.security.alpha.kubernetes.io/pod"]`}},
		{name: "AppArmor unconfined, allowed", annotations: map[string]string{apparmorKey + "train": "unconfined"}, privileged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := corev1.PodTemplateSpec{Spec: safe()}
			tmpl.Annotations = tt.annotations
			tmpl.Spec.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
			err := CheckTemplate(&tmpl, path, policy.Pods{AllowPrivileged: tt.privileged})
			got := refused(t, err, path, SwitchPrivileged)
			if !tt.privileged {
				// The spec is checked too, under path.spec.
				tt.want = append(tt.want, ".spec.securityContext.seccompProfile.type")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("CheckTemplate refused %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCheckTemplateBoundsAnnotations: a long annotation key or value does not make
// a long message.
func TestCheckTemplateBoundsAnnotations(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{}
	tmpl.Annotations = map[string]string{
		corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix + strings.Repeat("c", 100000): strings.Repeat("u", 100000)}
	err := CheckTemplate(&tmpl, "spec.template", policy.Pods{})
	if err == nil {
		t.Fatal("CheckTemplate = nil, want the annotation refused")
	}
	if msg := err.Error(); len(msg) > 400 {
		t.Errorf("message of %d bytes (%.120s...), want at most 400", len(msg), msg)
	}
}

// refused is the fields err refuses, relative to path, checking that each is
// refused for sw and that the message names it.
func refused(t *testing.T, err error, path, sw string) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("Check = %v, want nil or an *Error", err)
	}
	var got []string
	for _, v := range perr.Violations {
		got = append(got, strings.TrimPrefix(v.Field, path))
		if v.Switch != sw {
			t.Errorf("%s refused for %s, want %s", v.Field, v.Switch, sw)
		}
	}
	// The message lists the first five.
	for _, v := range perr.Violations[:min(len(perr.Violations), maxListed)] {
		if !strings.Contains(err.Error(), v.Field+": "+v.Value+" is refused") {
			t.Errorf("message %q does not name the field %s and its value %s", err, v.Field, v.Value)
		}
	}
	return got
}
