package classifier_test

import (
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
)

// review41: with --class-balance 1, --ambiguous-weight no longer weighs down a
// category whose lines are all ones the labellers disagreed on. fit computes the
// class-balance weights from the ambiguity-weighted counts, so the category weight
// n/(k*sum(w)) multiplied by the example weight w cancels w exactly: the category
// keeps its whole share of the loss however small AmbiguousWeight is.
// TrainOptions.AmbiguousWeight says it "weighs the loss of an example whose two
// labellers disagreed"; here it has no effect on the category head.
func TestReview41AmbiguousWeightSurvivesClassBalance(t *testing.T) {
	base, err := classifier.LoadDefault(classifier.Sources{ModelFile: classifier.NoModel}, classifier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The only network_transient lines are disagreed on.
	items, probe := disagreedItems(failure.UserCode)
	// pDataError is the classifier's belief in the agreed label on the probe.
	pDataError := func(cb, w float64) float64 {
		m, _, err := classifier.Train(base, items, classifier.TrainOptions{MaxIterations: 100, Folds: 3, ClassBalance: cb, AmbiguousWeight: w})
		if err != nil {
			t.Fatal(err)
		}
		p := base.WithModel(m).Classify(&probe)
		t.Logf("classBalance %g ambiguousWeight %g: %s %.3f", cb, w, p.Category, p.Confidence)
		if p.Category != failure.DataError {
			return 1 - p.Confidence
		}
		return p.Confidence
	}
	// Without class balance the option works: the agreed lines win clearly.
	if even, down := pDataError(0, 1), pDataError(0, 0.05); !(down > even+0.2) {
		t.Fatalf("class balance 0: P(data_error) %.3f at weight 1, %.3f at 0.05; want the option to matter", even, down)
	}
	even, down := pDataError(1, 1), pDataError(1, 0.05)
	if !(down > even+0.2) {
		t.Errorf("class balance 1: P(data_error) %.3f with the disagreed lines weighed 1 and %.3f weighed 0.05: "+
			"AmbiguousWeight is cancelled by the class-balance weights (computed from the weighted counts)", even, down)
	}
}
