package registry

import (
	"math"

	"github.com/autofix/autofix/ledger"
)

// Drift compares what the models predicted of the latest attempts with what
// happened: the mean predicted P(success) against the observed success rate.
type Drift struct {
	// Attempts is how many ended attempts were compared.
	Attempts int
	// Predicted is their mean predicted P(success); Observed the share that
	// succeeded.
	Predicted, Observed float64
	// Z is how many standard deviations the successes are from the predicted
	// count, were the predictions right (each attempt a Bernoulli trial of its own
	// probability).
	Z float64
	// Drifting: at least DriftMinAttempts were compared, the rates are at least
	// DriftGap apart, and |Z| is at least DriftZ — a gap too large to be chance.
	Drifting bool
}

// Thresholds of Drifting.
const (
	DriftMinAttempts = 50
	DriftGap         = 0.10
	DriftZ           = 3.0
	// DriftWindow is how many of the latest ended attempts are compared.
	DriftWindow = 500
)

// MeasureDrift compares the predictions of outs with their outcomes.
func MeasureDrift(outs []ledger.PredictedOutcome) Drift {
	var d Drift
	var sumP, variance, successes float64
	for _, o := range outs {
		sumP += o.PSuccess
		variance += o.PSuccess * (1 - o.PSuccess)
		if o.Succeeded {
			successes++
		}
	}
	d.Attempts = len(outs)
	if d.Attempts == 0 {
		return d
	}
	n := float64(d.Attempts)
	d.Predicted, d.Observed = sumP/n, successes/n
	switch gap := successes - sumP; {
	case variance > 0:
		d.Z = gap / math.Sqrt(variance)
	case gap > 0:
		d.Z = math.Inf(1) // every prediction certain, and wrong
	case gap < 0:
		d.Z = math.Inf(-1)
	}
	d.Drifting = d.Attempts >= DriftMinAttempts && math.Abs(d.Observed-d.Predicted) >= DriftGap && math.Abs(d.Z) >= DriftZ
	return d
}
