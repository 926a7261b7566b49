package classifier

import (
	"math"
	"testing"

	"github.com/autofix/autofix/failure"
)

// With SecondLabel, a text the labellers disagreed on is learned as either answer in
// shares, not as the first labeller's alone.
func TestFitSharesAmbiguousTargets(t *testing.T) {
	classes := []failure.Category{failure.ConfigError, failure.NetworkTransient}
	config, network := Label{failure.ConfigError, false}, Label{failure.NetworkTransient, true}
	train := func(w float64) (pConfig, pRetry float64) {
		t.Helper()
		var exs []example
		add := func(feat uint32, it Labelled) {
			for range 20 {
				exs = append(exs, newExample([]uint32{feat}, classes, &it, w))
			}
		}
		add(1, Labelled{Expected: config})
		add(2, Labelled{Expected: network})
		add(3, Labelled{Expected: config, Ambiguous: true, Second: &network})
		idx := make([]int, len(exs))
		for i := range idx {
			idx[i] = i
		}
		opts := TrainOptions{MinDocFreq: 1, L2: 1e-4, MaxIterations: 200}
		if err := opts.defaults(); err != nil {
			t.Fatal(err)
		}
		f, err := fit(exs, idx, len(classes), opts)
		if err != nil {
			t.Fatal(err)
		}
		z := f.logits([]uint32{3})
		p := make([]float64, len(classes))
		softmax(z[:len(classes)], 1, p)
		return p[0], sigmoid(z[len(classes)])
	}
	if pc, pr := train(0); pc < 0.9 || pr > 0.1 {
		t.Errorf("first labels alone: P(config_error) %.3f, P(retry) %.3f; want the first label's answer", pc, pr)
	}
	if pc, pr := train(0.5); math.Abs(pc-0.5) > 0.05 || math.Abs(pr-0.5) > 0.05 {
		t.Errorf("both labels alike: P(config_error) %.3f, P(retry) %.3f; want both near 0.5", pc, pr)
	}
	if pc, pr := train(0.25); math.Abs(pc-0.75) > 0.05 || math.Abs(pr-0.25) > 0.05 {
		t.Errorf("a quarter to the second label: P(config_error) %.3f, P(retry) %.3f; want 0.75 and 0.25", pc, pr)
	}
}

func TestSecondLabelOption(t *testing.T) {
	for _, w := range []float64{-0.1, 0.6, math.NaN()} {
		o := TrainOptions{SecondLabel: w}
		if err := o.defaults(); err == nil {
			t.Errorf("SecondLabel %v accepted", w)
		}
	}
}

// With AgreedRetryCurve, a line the labellers disagreed on is neither a false nor a
// missed retry on the curve that chooses the threshold.
func TestRetryCurveLeavesOutDisputedLines(t *testing.T) {
	classes := []failure.Category{failure.NetworkTransient, failure.ConfigError}
	network, config := Label{failure.NetworkTransient, true}, Label{failure.ConfigError, false}
	items := []Labelled{
		{Expected: network},
		{Expected: config},
		{Expected: config, Ambiguous: true, Second: &network}, // disputed: read as network
	}
	var exs []example
	for i := range items {
		exs = append(exs, newExample(nil, classes, &items[i], 0))
	}
	probs := [][]float64{{0.9, 0.1}, {0.1, 0.9}, {0.9, 0.1}}
	pRetry := []float64{0.9, 0.1, 0.9}
	at := func(curve []CurvePoint, th float64) CurvePoint {
		for _, p := range curve {
			if math.Abs(p.Threshold-th) < 1e-9 {
				return p
			}
		}
		t.Fatalf("no point at %v", th)
		return CurvePoint{}
	}
	if p := at(retryCurve(probs, pRetry, exs, classes, 0.3, false), 0.5); p.FalseRetryRate != 0.5 || p.MissedRate != 0 {
		t.Errorf("every line: %+v, want half the not-retryable lines retried", p)
	}
	if p := at(retryCurve(probs, pRetry, exs, classes, 0.3, true), 0.5); p.FalseRetryRate != 0 || p.MissedRate != 0 {
		t.Errorf("agreed lines: %+v, want no false retry", p)
	}
	if !exs[2].disputed || exs[1].disputed {
		t.Errorf("disputed = %v, %v; want only the line whose labellers disagreed on the retry", exs[1].disputed, exs[2].disputed)
	}
}
