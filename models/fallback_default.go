package models

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

//go:embed fallback.json
var defaultFallback []byte

// DefaultFallback returns the learned text classifier that ships with autofix,
// trained on every labelled message in rules/testdata (`autofix train-fallback`).
func DefaultFallback() (*Fallback, error) {
	var f Fallback
	if err := json.Unmarshal(defaultFallback, &f); err != nil {
		return nil, fmt.Errorf("default fallback: %w", err)
	}
	return &f, nil
}
