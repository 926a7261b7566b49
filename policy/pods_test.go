package policy

import (
	"strings"
	"testing"
)

func TestPodsDefaultRefusesEveryClass(t *testing.T) {
	p := Default().Pods
	if p.AllowPrivileged || p.AllowHostPath || p.AllowHostNamespaces || p.AllowHostPorts || len(p.AllowedCapabilities) > 0 {
		t.Errorf("Default().Pods = %+v, want every switch off", p)
	}
}

func TestPodsValidate(t *testing.T) {
	tests := []struct {
		caps  []string
		field string // "" when valid
	}{
		{nil, ""},
		{[]string{"NET_BIND_SERVICE", "cap_sys_ptrace"}, ""},
		{[]string{"NET_BIND_SERVICE", "ALL"}, "policy.pods.allowedCapabilities[1]"},
		{[]string{"cap_all"}, "policy.pods.allowedCapabilities[0]"},
		{[]string{"NET BIND"}, "policy.pods.allowedCapabilities[0]"},
		{[]string{""}, "policy.pods.allowedCapabilities[0]"},
	}
	for _, tt := range tests {
		c := Default()
		c.Pods.AllowedCapabilities = tt.caps
		err := c.Validate()
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("Validate() with allowedCapabilities %q = %v, want nil", tt.caps, err)
		case tt.field != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.field+":")):
			t.Errorf("Validate() with allowedCapabilities %q = %v, want an error naming %s", tt.caps, err, tt.field)
		}
	}
}
