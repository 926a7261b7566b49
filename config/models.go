package config

import (
	"fmt"
	"time"
)

// Models configures the model registry (package registry; docs/models.md): how
// often each replica reads which version of the retry models is active, and the
// gates a version must pass to be promoted.
type Models struct {
	// PollInterval is how often a replica reads the active version from the ledger
	// and, when it has changed, loads it (default 30s).
	PollInterval time.Duration `yaml:"pollInterval"`
	// Promotion are the gates of a promotion.
	Promotion ModelGates `yaml:"promotion"`
}

// ModelGates are what a candidate version must show against the active one, both
// scored on the same retries the ledger recorded with their outcomes.
type ModelGates struct {
	// MinOutcomes is how many retries with known outcomes must be scored (default 200).
	MinOutcomes int `yaml:"minOutcomes"`
	// CalibrationMargin is how far the candidate's expected calibration error may be
	// above the active's, as a probability (default 0.02).
	CalibrationMargin float64 `yaml:"calibrationMargin"`
	// Window is how far back the retries scored were received (default 720h); only
	// those received after both versions' training data count.
	Window time.Duration `yaml:"window"`
	// MaxOutcomes is how many of the latest retries are scored at most, and
	// MaxPerNamespace how many of any one namespace's (defaults 20000 and 2000): a
	// tenant whose own code fails its Jobs must not decide a promotion.
	MaxOutcomes     int `yaml:"maxOutcomes"`
	MaxPerNamespace int `yaml:"maxPerNamespace"`
}

func defaultModels() Models {
	return Models{PollInterval: 30 * time.Second, Promotion: ModelGates{MinOutcomes: 200, CalibrationMargin: 0.02,
		Window: 30 * 24 * time.Hour, MaxOutcomes: 20000, MaxPerNamespace: 2000}}
}

// validate reports the first problem, naming the field.
func (m *Models) validate() error {
	p := &m.Promotion
	switch {
	case m.PollInterval < time.Second:
		return fmt.Errorf("models.pollInterval: %s, want at least 1s", m.PollInterval)
	case p.MinOutcomes < 1:
		return fmt.Errorf("models.promotion.minOutcomes: %d, want at least 1", p.MinOutcomes)
	case !(p.CalibrationMargin >= 0 && p.CalibrationMargin <= 1):
		return fmt.Errorf("models.promotion.calibrationMargin: %v, want 0 to 1", p.CalibrationMargin)
	case p.Window < time.Hour:
		return fmt.Errorf("models.promotion.window: %s, want at least 1h", p.Window)
	case p.MaxOutcomes < p.MinOutcomes:
		return fmt.Errorf("models.promotion.maxOutcomes: %d, want at least minOutcomes (%d)", p.MaxOutcomes, p.MinOutcomes)
	case p.MaxPerNamespace < 1:
		return fmt.Errorf("models.promotion.maxPerNamespace: %d, want at least 1", p.MaxPerNamespace)
	}
	return nil
}
