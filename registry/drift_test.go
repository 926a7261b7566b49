package registry

import (
	"math"
	"testing"

	"github.com/autofix/autofix/ledger"
)

func outcomes(n int, p float64, successes int) []ledger.PredictedOutcome {
	out := make([]ledger.PredictedOutcome, n)
	for i := range out {
		out[i] = ledger.PredictedOutcome{PSuccess: p, Succeeded: i < successes}
	}
	return out
}

func TestMeasureDrift(t *testing.T) {
	tests := []struct {
		name                string
		outs                []ledger.PredictedOutcome
		predicted, observed float64
		z                   float64
		drifting            bool
	}{
		{"nothing ended", nil, 0, 0, 0, false},
		// 100 at 0.9, 90 succeeded: as predicted.
		{"calibrated", outcomes(100, 0.9, 90), 0.9, 0.9, 0, false},
		// 100 at 0.9, 70 succeeded: 20 fewer than 90, sd sqrt(100*0.09) = 3: z -6.67.
		{"optimistic", outcomes(100, 0.9, 70), 0.9, 0.7, -20.0 / 3, true},
		// 20 at 0.9, 10 succeeded: a large gap, too few to tell.
		{"too few", outcomes(20, 0.9, 10), 0.9, 0.5, -8 / math.Sqrt(1.8), false},
		// 1000 at 0.5, 550 succeeded: z 50/sqrt(250) = 3.16, but a gap of 0.05 only.
		{"significant but small", outcomes(1000, 0.5, 550), 0.5, 0.55, 50 / math.Sqrt(250), false},
		// 60 certain predictions, 48 successes: infinitely unlikely.
		{"certain and wrong", outcomes(60, 1, 48), 1, 0.8, math.Inf(-1), true},
	}
	for _, tt := range tests {
		d := MeasureDrift(tt.outs)
		close := func(a, b float64) bool { return a == b || math.Abs(a-b) < 1e-9 }
		if d.Attempts != len(tt.outs) || !close(d.Predicted, tt.predicted) || !close(d.Observed, tt.observed) || !close(d.Z, tt.z) ||
			d.Drifting != tt.drifting {
			t.Errorf("%s: MeasureDrift = %+v, want predicted %v, observed %v, z %v, drifting %v", tt.name, d, tt.predicted,
				tt.observed, tt.z, tt.drifting)
		}
	}
}
