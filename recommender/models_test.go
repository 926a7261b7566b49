package recommender_test

import (
	"sync"
	"testing"

	"github.com/autofix/autofix/models"
)

// SetModels swaps the models later recommendations predict with (the registry's
// active version, picked up while the service runs), and is safe while events are
// decided.
func TestSetModelsSwapsThePredictions(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	before := r.Recommend(ev, nil)
	if len(before.Options) == 0 {
		t.Fatalf("no options: %s", before.Explanation)
	}
	m := *r.Models()
	m.Name = "constant-0.5"
	m.Success = &models.Logistic{Weights: []float64{0, 0}} // P(success) 0.5 whatever the option
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 20 {
			r.Recommend(ev, nil)
		}
	})
	r.SetModels(&m)
	wg.Wait()
	after := r.Recommend(ev, nil)
	if after.ModelVersion != "constant-0.5" || r.Models() != &m {
		t.Errorf("after SetModels: recommendation by %q, Models() %p; want constant-0.5, %p", after.ModelVersion, r.Models(), &m)
	}
	for _, o := range after.Options {
		if o.PSuccess != 0.5 {
			t.Errorf("option %+v: P(success) %v, want the new models' 0.5", o.Resources, o.PSuccess)
		}
	}
	if before.ModelVersion == after.ModelVersion {
		t.Errorf("the models' name did not change: %q", after.ModelVersion)
	}
}
