package config

import (
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/policy"
)

func TestAutonomyFromTheFile(t *testing.T) {
	c, err := Load("testdata/full.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Autonomy{Enabled: true, Window: 336 * time.Hour, MinReviews: 20, MinApprovalRate: 0.95, MinOutcomes: 15,
		MinSuccessRate: 0.85, MinConfidence: 0.8, RevertWindow: 20, RevertBelow: 0.7, PollInterval: 15 * time.Second,
		CheckInterval: time.Minute}
	if c.Policy.Autonomy != want {
		t.Errorf("full.yaml's policy.autonomy = %+v, want %+v (checkInterval the default)", c.Policy.Autonomy, want)
	}
	if !c.Policy.Rules[0].Final {
		t.Error("full.yaml's policy.rules[0].final = false, want true")
	}
	if d := Default(); d.Policy.Autonomy != policy.DefaultAutonomy() {
		t.Errorf("Default().Policy.Autonomy = %+v, want policy.DefaultAutonomy()", d.Policy.Autonomy)
	}
}

func TestAutonomyInvalid(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"policy:\n  autonomy:\n    minApprovalRate: 90\n", "policy.autonomy.minApprovalRate: 90, want a number within [0, 1]"},
		{"policy:\n  autonomy:\n    window: 5m\n", "policy.autonomy.window: 5m0s, want 1h to 8784h0m0s"},
		{"policy:\n  autonomy:\n    revertBelow: .nan\n", "policy.autonomy.revertBelow: NaN, want a number within [0, 1]"},
		{"policy:\n  autonomy:\n    revertAfter: 3\n", "field revertAfter not found"},
	} {
		_, err := loadYAML(t, tt.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error containing %q", tt.yaml, err, tt.want)
		}
	}
}
