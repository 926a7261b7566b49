package classifier

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/autofix/autofix/failure"
)

// biasModel is a model without feature weights: its prediction is its biases'.
// It tells dependency_unavailable from config_error.
func biasModel(dependency, config float64) *Model {
	const buckets = 16
	rowOf := make([]int32, buckets)
	for i := range rowOf {
		rowOf[i] = -1
	}
	return &Model{
		classes: []failure.Category{failure.DependencyUnavailable, failure.ConfigError},
		buckets: buckets, rowOf: rowOf, bias: []float64{dependency, config, 0},
		temperature: 1, retryA: 1, retryThreshold: 0.5, minConfidence: 0.3,
	}
}

// TestModelVetoesARetryTheRulesAreNotSureOf: below Authority, a retry the rules
// call for is not made when the model's P(a retry fixes it) is under retryVeto,
// and the evidence says why; above it, the rules' retry stands.
func TestModelVetoesARetryTheRulesAreNotSureOf(t *testing.T) {
	rs, err := Load(fstest.MapFS{"r.yaml": &fstest.MapFile{Data: []byte(`rules:
  - id: service-account-missing
    description: A service account that does not exist yet.
    expr: has("error looking up service account")
    category: dependency_unavailable
    retryable: true
    action: retry_backoff
    confidence: 0.9
    priority: 50
`)}})
	if err != nil {
		t.Fatal(err)
	}
	ev := failure.Event{Job: failure.Job{Name: "j", Kind: failure.Batch},
		Failure: failure.Signals{Reason: "FailedCreate", Message: `error looking up service account ml/runner: serviceaccount "runner" not found`}}
	for _, tc := range []struct {
		name           string
		config         float64 // the model's config_error logit; dependency_unavailable's is 0
		wantRetry      bool
		wantVetoReason bool
	}{
		// p(config_error) = 0.88 < the rules' 0.9; P(retry) = 0.12 < retryVeto.
		{name: "model doubts the retry", config: 2, wantRetry: false, wantVetoReason: true},
		// p(config_error) = 0.62; P(retry) = 0.38 >= retryVeto.
		{name: "model does not doubt it enough", config: 0.5, wantRetry: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(rs, Options{Model: biasModel(0, tc.config)})
			got := c.Classify(&ev)
			if got.Category != failure.DependencyUnavailable || got.Retryable != tc.wantRetry {
				t.Fatalf("got %s retryable=%v, want dependency_unavailable retryable=%v (evidence %q)", got.Category, got.Retryable, tc.wantRetry, got.Evidence)
			}
			if wantAction := map[bool]failure.Action{true: failure.RetryBackoff, false: failure.NoRetry}[tc.wantRetry]; got.Action != wantAction {
				t.Errorf("action %s, want %s", got.Action, wantAction)
			}
			said := slices.ContainsFunc(got.Evidence, func(e string) bool { return strings.Contains(e, "a retry is unlikely to help") })
			if said != tc.wantVetoReason {
				t.Errorf("evidence %q: says the retry is unlikely to help = %v, want %v", got.Evidence, said, tc.wantVetoReason)
			}
		})
	}
}
