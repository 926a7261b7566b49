package policy

import (
	"math"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// TestAutonomyNaNThresholdsRefused checks that Validate refuses NaN thresholds.
// `.nan` in YAML is a float64 NaN; every comparison with it is false, so a range
// check written as `v < 0 || v > 1` lets it through, and then minConfidence: .nan
// applies grants at any confidence, revertBelow: .nan never revokes, and
// minApprovalRate/minSuccessRate: .nan pass any record. Decide must not honour a
// NaN minConfidence either, should one reach it unvalidated.
func TestAutonomyNaNThresholdsRefused(t *testing.T) {
	for _, set := range []func(*Autonomy){
		func(a *Autonomy) { a.MinConfidence = math.NaN() },
		func(a *Autonomy) { a.RevertBelow = math.NaN() },
		func(a *Autonomy) { a.MinApprovalRate = math.NaN() },
		func(a *Autonomy) { a.MinSuccessRate = math.NaN() },
	} {
		a := DefaultAutonomy()
		set(&a)
		if err := a.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil; want NaN refused", a)
		}
	}
	// What it does once let through: a grant applies to a classification of
	// confidence 0.01.
	c := Default()
	c.Autonomy.MinConfidence = math.NaN()
	ev := &failure.Event{Job: failure.Job{Namespace: "team-a", Name: "t-1", Template: "trainer", Kind: failure.Batch}}
	rec := &failure.Recommendation{Classification: failure.Classification{Category: failure.OOMMemory, Confidence: 0.01, Retryable: true},
		Retry: true, Chosen: 0, Options: []failure.Option{{CostMultiple: 3}}}
	d := c.Decide(Input{Event: ev, Recommendation: rec, Runs: 1,
		Grant: &Grant{Seq: 1, Category: failure.OOMMemory, Template: "team-a/trainer", JobKind: failure.Batch, Actor: "alice", At: time.Now()}})
	if d.Verdict == Auto {
		t.Errorf("minConfidence NaN: a 0.01-confidence classification applies on its own: %+v", d)
	}
}

// TestGrantStaysWithItsJobKind checks that a grant applies to the kind of job it
// was granted for only. A kind is category + namespace/template + job kind: a batch
// Job template "api" and a Deployment "api" in the same namespace (its template
// defaults to its name, remediate/deploy.go) share a template key, and a grant
// earned on the batch Jobs' record must not apply to the Deployment, which the
// default policy reviews ("deployments-reviewed").
func TestGrantStaysWithItsJobKind(t *testing.T) {
	c := Default()
	dep := &failure.Event{Job: failure.Job{Namespace: "team-a", Name: "api", Kind: failure.Deployment}}
	rec := &failure.Recommendation{Classification: failure.Classification{Category: failure.OOMMemory, Confidence: 0.95, Retryable: true},
		Retry: true, Chosen: 0, Options: []failure.Option{{CostMultiple: 1.2}}}
	for _, job := range []failure.JobKind{failure.Batch, ""} {
		g := &Grant{Seq: 1, Category: failure.OOMMemory, Template: "team-a/api", JobKind: job, Actor: "alice", At: time.Now()}
		if d := c.Decide(Input{Event: dep, Recommendation: rec, Runs: 1, Grant: g}); d.Verdict == Auto {
			t.Errorf("a grant of oom_memory on team-a/api for %q jobs applies a Deployment's fix: %+v", job, d)
		}
	}
	g := &Grant{Seq: 1, Category: failure.OOMMemory, Template: "team-a/api", JobKind: failure.Deployment, Actor: "alice", At: time.Now()}
	if d := c.Decide(Input{Event: dep, Recommendation: rec, Runs: 1, Grant: g}); d.Verdict != Auto || d.Grant != 1 {
		t.Errorf("the Deployment's own grant: %+v; want it applied, naming grant 1", d)
	}
}
