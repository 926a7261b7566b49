package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestModelsSection: a file's models section sets what it names and keeps the
// defaults of the rest.
func TestModelsSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "models:\n  pollInterval: 5s\n  promotion:\n    minOutcomes: 500\n    calibrationMargin: 0\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Models{PollInterval: 5 * time.Second, Promotion: ModelGates{MinOutcomes: 500, CalibrationMargin: 0,
		Window: 720 * time.Hour, MaxOutcomes: 20000, MaxPerNamespace: 2000}}
	if c.Models != want {
		t.Errorf("models = %+v, want %+v", c.Models, want)
	}
	if d := Default().Models; d.PollInterval != 30*time.Second || d.Promotion.MinOutcomes != 200 || d.Promotion.CalibrationMargin != 0.02 {
		t.Errorf("Default().Models = %+v, want 30s, 200 outcomes, a margin of 0.02", d)
	}
}

func TestModelsInFullYAML(t *testing.T) {
	c, err := Load("testdata/full.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Models{PollInterval: 15 * time.Second, Promotion: ModelGates{MinOutcomes: 300, CalibrationMargin: 0.01,
		Window: 336 * time.Hour, MaxOutcomes: 50000, MaxPerNamespace: 5000}}
	if c.Models != want {
		t.Errorf("full.yaml's models = %+v, want %+v", c.Models, want)
	}
}

func TestModelsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"poll interval", "models:\n  pollInterval: 10ms\n", "models.pollInterval: 10ms, want at least 1s"},
		{"min outcomes", "models:\n  promotion: {minOutcomes: 0}\n", "models.promotion.minOutcomes: 0"},
		{"negative margin", "models:\n  promotion: {calibrationMargin: -0.1}\n", "models.promotion.calibrationMargin: -0.1"},
		{"margin NaN", "models:\n  promotion: {calibrationMargin: .nan}\n", "models.promotion.calibrationMargin: NaN"},
		{"margin over 1", "models:\n  promotion: {calibrationMargin: 2}\n", "models.promotion.calibrationMargin: 2"},
		{"window", "models:\n  promotion: {window: 30m}\n", "models.promotion.window: 30m0s"},
		{"max below min", "models:\n  promotion: {minOutcomes: 300, maxOutcomes: 100}\n", "models.promotion.maxOutcomes: 100, want at least minOutcomes (300)"},
		{"per namespace", "models:\n  promotion: {maxPerNamespace: -1}\n", "models.promotion.maxPerNamespace: -1"},
		{"unknown field", "models:\n  promotion: {minOutcome: 3}\n", "field minOutcome not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, env(nil))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load+Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
