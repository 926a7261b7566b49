package api

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/autofix/autofix/registry"
)

// TestDriftMetrics: the drift gauges say what the models predicted and what
// happened, and flag drift; nothing ended leaves the rates unset.
func TestDriftMetrics(t *testing.T) {
	m := NewMetrics()
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	m.Drift(registry.Drift{})
	if got := scrape(); strings.Contains(got, "autofix_model_success_rate{") || !strings.Contains(got, "autofix_model_drifting 0") {
		t.Errorf("metrics with nothing ended:\n%s\nwant no rates and drifting 0", got)
	}
	m.Drift(registry.Drift{Attempts: 60, Predicted: 0.9, Observed: 0.5, Drifting: true})
	got := scrape()
	for _, want := range []string{`autofix_model_success_rate{rate="predicted"} 0.9`, `autofix_model_success_rate{rate="observed"} 0.5`,
		"autofix_model_drifting 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics after drift: want %q in\n%s", want, got)
		}
	}
}
