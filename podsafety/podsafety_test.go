package podsafety

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/autofix/autofix/policy"
)

func yes() *bool { t := true; return &t }

func no() *bool { f := false; return &f }

// safe is what an ordinary training pod looks like: nothing any switch governs.
func safe() corev1.PodSpec {
	return corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: yes()},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
		Containers: []corev1.Container{{Name: "train", Image: "pytorch", Ports: []corev1.ContainerPort{{ContainerPort: 8000}},
			SecurityContext: &corev1.SecurityContext{Privileged: no(), AllowPrivilegeEscalation: no(),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
	}
}

func TestCheck(t *testing.T) {
	const path = "stages[2].deploy.template.spec"
	tests := []struct {
		name  string
		edit  func(*corev1.PodSpec)
		allow policy.Pods
		// want are the refused fields, relative to path; none: allowed.
		want []string
	}{
		{name: "an ordinary pod", edit: func(*corev1.PodSpec) {}},
		{name: "privileged", edit: func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Privileged = yes() },
			want: []string{".containers[0].securityContext.privileged"}},
		{name: "privileged, allowed", edit: func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Privileged = yes() },
			allow: policy.Pods{AllowPrivileged: true}},
		{name: "privilege escalation", edit: func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.AllowPrivilegeEscalation = yes() },
			want: []string{".containers[0].securityContext.allowPrivilegeEscalation"}},
		{name: "unmasked /proc", edit: func(s *corev1.PodSpec) {
			m := corev1.UnmaskedProcMount
			s.Containers[0].SecurityContext.ProcMount = &m
		}, want: []string{".containers[0].securityContext.procMount"}},
		{name: "windows host process", edit: func(s *corev1.PodSpec) {
			s.SecurityContext.WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: yes()}
		}, want: []string{".securityContext.windowsOptions.hostProcess"}},
		{name: "a privileged init container", edit: func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "a"}, {Name: "b", SecurityContext: &corev1.SecurityContext{Privileged: yes()}}}
		}, want: []string{".initContainers[1].securityContext.privileged"}},
		{name: "a privileged ephemeral container", edit: func(s *corev1.PodSpec) {
			s.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", SecurityContext: &corev1.SecurityContext{Privileged: yes()}}}}
		}, want: []string{".ephemeralContainers[0].securityContext.privileged"}},
		{name: "an added capability", edit: func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE", "SYS_ADMIN"}
		}, want: []string{".containers[0].securityContext.capabilities.add[0]", ".containers[0].securityContext.capabilities.add[1]"}},
		{name: "an allowed capability, however spelt", edit: func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"CAP_NET_BIND_SERVICE", "SYS_ADMIN"}
		}, allow: policy.Pods{AllowedCapabilities: []string{"net_bind_service"}},
			want: []string{".containers[0].securityContext.capabilities.add[1]"}},
		{name: "capabilities under allowPrivileged", edit: func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"SYS_ADMIN"}
		}, allow: policy.Pods{AllowPrivileged: true}},
		{name: "hostPath", edit: func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		}, want: []string{".volumes[1].hostPath"}},
		{name: "hostPath, allowed", edit: func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		}, allow: policy.Pods{AllowHostPath: true}},
		{name: "host namespaces", edit: func(s *corev1.PodSpec) { s.HostNetwork, s.HostPID, s.HostIPC = true, true, true },
			want: []string{".hostNetwork", ".hostPID", ".hostIPC"}},
		{name: "host namespaces, allowed", edit: func(s *corev1.PodSpec) { s.HostNetwork, s.HostPID, s.HostIPC = true, true, true },
			allow: policy.Pods{AllowHostNamespaces: true}},
		{name: "a host port", edit: func(s *corev1.PodSpec) {
			s.Containers[0].Ports = append(s.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 80, HostPort: 80})
		}, want: []string{".containers[0].ports[1].hostPort"}},
		{name: "a host port, allowed", edit: func(s *corev1.PodSpec) {
			s.Containers[0].Ports = append(s.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 80, HostPort: 80})
		}, allow: policy.Pods{AllowHostPorts: true}},
		{name: "one switch allows its class only", edit: func(s *corev1.PodSpec) {
			s.HostNetwork = true
			s.Containers[0].SecurityContext.Privileged = yes()
		}, allow: policy.Pods{AllowPrivileged: true, AllowHostPath: true, AllowHostPorts: true}, want: []string{".hostNetwork"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := safe()
			tt.edit(&spec)
			err := Check(&spec, path, tt.allow)
			var got []string
			var perr *Error
			if errors.As(err, &perr) {
				for _, v := range perr.Violations {
					got = append(got, strings.TrimPrefix(v.Field, path))
					if !strings.Contains(err.Error(), v.Field+": ") || !strings.Contains(err.Error(), v.Switch) {
						t.Errorf("message %q does not name the field %s and the switch %s", err, v.Field, v.Switch)
					}
				}
			} else if err != nil {
				t.Fatalf("Check = %v, want nil or an *Error", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Check refused %q, want %q (err: %v)", got, tt.want, err)
			}
		})
	}
}

func TestErrorMessageIsBounded(t *testing.T) {
	spec := corev1.PodSpec{}
	for range 100 {
		spec.Volumes = append(spec.Volumes, corev1.Volume{VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: "/" + strings.Repeat("x", 10000)}}})
	}
	err := Check(&spec, "spec", policy.Pods{})
	if err == nil {
		t.Fatal("Check = nil, want the hostPath volumes refused")
	}
	if msg := err.Error(); len(msg) > 2000 || !strings.Contains(msg, "and 95 more") {
		t.Errorf("message of %d bytes (%.120s...), want at most 2000 ending in \"and 95 more\"", len(msg), msg)
	}
}
