package recommender_test

import (
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/recommender"
)

// constantModels are the default models whose recalibration of P(success) has
// weights (intercept and slope).
func constantModels(t *testing.T, r *recommender.Recommender, name string, weights ...float64) *models.Models {
	t.Helper()
	m := *r.Models()
	m.Name = name
	m.Success = &models.Logistic{Weights: weights}
	return &m
}

// A candidate evaluated in shadow predicts the decisions the active version makes,
// which stay the active version's: the recommendation says what the candidate would
// have decided, and its P(success) of the option chosen.
func TestShadowPredictsWithoutChangingTheDecision(t *testing.T) {
	r := newRecommender(t)
	r.SetVersion(4, r.Models())
	ev := oomEvent()
	plain := r.Recommend(ev, nil)
	if plain.Shadow != nil || plain.ModelRegistryVersion != 4 || !plain.Retry {
		t.Fatalf("without a shadow: shadow %+v, version %d, retry %v", plain.Shadow, plain.ModelRegistryVersion, plain.Retry)
	}

	// The same models as a candidate: nothing would change.
	same := *r.Models()
	r.SetShadow(5, &same)
	got := r.Recommend(ev, nil)
	sh := got.Shadow
	if sh == nil || sh.Version != 5 || sh.Changed || !sh.Retry || sh.Error != "" {
		t.Fatalf("shadow of the same models = %+v, want version 5, unchanged, retrying", sh)
	}
	if sh.PSuccess != plain.Options[0].PSuccess || !sh.Option.SameConfiguration(&plain.Options[0]) {
		t.Errorf("shadow P(success) %v of %+v; want the active's %v of %+v", sh.PSuccess, sh.Option.Resources,
			plain.Options[0].PSuccess, plain.Options[0].Resources)
	}
	got.Shadow = nil
	if !reflect.DeepEqual(got, plain) {
		t.Errorf("the shadow changed the decision:\n got %+v\nwant %+v", got, plain)
	}

	// A candidate that thinks every retry fails says so of the active's choice.
	r.SetShadow(6, constantModels(t, r, "pessimist", -20, 0))
	got = r.Recommend(ev, nil)
	if sh := got.Shadow; sh == nil || sh.Version != 6 || sh.PSuccess > 0.001 || sh.Option != nil && sh.Option.PSuccess > 0.001 {
		t.Errorf("shadow of a pessimist = %+v, want P(success) about 0", got.Shadow)
	}
	got.Shadow = nil
	if !reflect.DeepEqual(got, plain) {
		t.Errorf("the pessimist's shadow changed the decision")
	}

	// Failures no model decides have no shadow; nor has the active version itself.
	notRetryable := oomEvent()
	notRetryable.Failure = failure.Signals{Reason: "Error", ExitCode: 1,
		LogTail: "Traceback (most recent call last):\nSyntaxError: invalid syntax"}
	if got := r.Recommend(notRetryable, nil); got.Retry || got.Shadow != nil {
		t.Errorf("a syntax error: retry %v, shadow %+v; want neither", got.Retry, got.Shadow)
	}
	r.SetShadow(4, &same)
	if got := r.Recommend(ev, nil); got.Shadow != nil {
		t.Errorf("shadow of the version in use: %+v, want none", got.Shadow)
	}
	r.SetShadow(0, nil)
	if got := r.Recommend(ev, nil); got.Shadow != nil || r.Shadowed() != 0 {
		t.Errorf("after SetShadow(nil): shadow %+v, Shadowed %d", got.Shadow, r.Shadowed())
	}
}

// A candidate whose prediction panics (an artifact at odds with this code) gives a
// shadow with its error, and the decision is the active version's.
func TestShadowPanicIsTheShadowsError(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	plain := r.Recommend(ev, nil)
	r.SetShadow(2, constantModels(t, r, "broken", 1)) // one weight of two: an index out of range
	got := r.Recommend(ev, nil)
	if got.Shadow == nil || got.Shadow.Version != 2 || !strings.Contains(got.Shadow.Error, "prediction failed") ||
		got.Shadow.Option != nil || got.Shadow.Changed {
		t.Fatalf("shadow of a broken candidate = %+v, want its error alone", got.Shadow)
	}
	got.Shadow = nil
	if !reflect.DeepEqual(got, plain) {
		t.Errorf("the broken shadow changed the decision")
	}
}

// SetShadow is safe while recommendations are made (run with -race).
func TestSetShadowWhileRecommending(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	cand := constantModels(t, r, "half", 0, 0)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 20 {
			if got := r.Recommend(ev, nil); !got.Retry {
				t.Errorf("no retry: %s", got.Explanation)
			}
		}
	})
	for i := range 10 {
		r.SetShadow(i%2*7, []*models.Models{nil, cand}[i%2])
	}
	wg.Wait()
}

// BenchmarkRecommendShadow is BenchmarkRecommendGPU and BenchmarkRecommendMemory with
// a candidate evaluated in shadow (another set of models): each decision runs the
// search twice.
func BenchmarkRecommendShadow(b *testing.B) {
	for _, bc := range []struct {
		name    string
		ev      func() (*failure.Event, []failure.Outcome)
		shadows bool
	}{
		{"gpu", gpuEvent, false}, {"gpu+shadow", gpuEvent, true},
		{"memory", func() (*failure.Event, []failure.Outcome) { return oomEvent(), nil }, false},
		{"memory+shadow", func() (*failure.Event, []failure.Outcome) { return oomEvent(), nil }, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newRecommender(b)
			if bc.shadows {
				m := *r.Models()
				m.Name = "candidate"
				r.SetShadow(2, &m)
			}
			ev, history := bc.ev()
			if rec := r.Recommend(ev, history); !rec.Retry || (rec.Shadow != nil) != bc.shadows {
				b.Fatalf("retry %v, shadow %+v", rec.Retry, rec.Shadow)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.Recommend(ev, history)
			}
		})
	}
}

// TestShadowPredictsWithTheCandidatesOwnModels: the shadow's search uses the
// candidate's models throughout. It once shared the active version's models.Scratch,
// whose caches (P(memory) and P(disk) per size, the runtime, P(GPU), P(deadline),
// the base runtime) are keyed by the context, not by the models: the candidate was
// handed the active's predictions for all but its Success recalibration, and a
// candidate whose memory model says no size is enough "predicted" what the active
// did.
func TestShadowPredictsWithTheCandidatesOwnModels(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	ev.Failure.Usage = failure.Usage{} // no peak: P(memory) comes from the memory model
	cand := *r.Models()
	cand.Name = "memory-pessimist"
	w := append([]float64(nil), cand.Memory.Weights...)
	w[0] = -50 // P(memory) ~ 0 whatever the size
	cand.Memory = &models.Logistic{Weights: w}
	r.SetShadow(9, &cand)
	rec := r.Recommend(ev, nil)
	chosen, ok := rec.ChosenOption()
	if !ok || rec.Shadow == nil || rec.Shadow.Error != "" {
		t.Fatalf("rec retry %v, shadow %+v", ok, rec.Shadow)
	}
	cat := failure.DefaultCatalogue()
	ctx := models.NewContext(ev, rec.Classification.Category, nil, cat)
	want := cand.Predict(&ctx, &chosen, &cat, nil).PSuccess
	t.Logf("active P(success) %.4f; shadow says candidate %.4f; candidate really predicts %.4f; shadow retry %v",
		chosen.PSuccess, rec.Shadow.PSuccess, want, rec.Shadow.Retry)
	if math.Abs(rec.Shadow.PSuccess-want) > 0.01 {
		t.Errorf("shadow P(success) %.4f of the active's choice; the candidate's models give %.4f", rec.Shadow.PSuccess, want)
	}
	if rec.Shadow.Retry {
		t.Errorf("a candidate that gives every memory size P ~ 0 would retry (%+v)", rec.Shadow.Option)
	}
}
