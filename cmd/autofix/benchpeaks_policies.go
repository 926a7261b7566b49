package main

import (
	"fmt"
	"math"
	"strconv"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/recommender"
)

// peakRun is one run cut from a container's usage series: consecutive samples.
// Times are seconds on the trace's clock, peak is bytes.
type peakRun struct {
	start, end float64
	samples    int
	peak       float64
}

// seconds is how long the run lasted: its samples times their mean spacing (0 for a
// run of one sample).
func (r peakRun) seconds() float64 {
	if r.samples < 2 {
		return 0
	}
	return (r.end - r.start) * float64(r.samples) / float64(r.samples-1)
}

// peakEstimator chooses the memory limit of a container's next run from its earlier
// runs. It sees a run only after its limit was chosen: limit is not given the run.
type peakEstimator interface {
	// limit is the limit, in bytes, for the run that starts at start (seconds), and
	// the chance the policy gives it of holding, or -1 when it gives none.
	limit(start float64) (bytes, pHold float64)
	// observe records a finished run.
	observe(r peakRun)
}

// peakPolicy names a way of choosing limits; new makes its state for one container.
type peakPolicy struct {
	name, about string
	new         func() peakEstimator
}

// baselinePolicies are the limits teams set without autofix.
func baselinePolicies() []peakPolicy {
	return append(scaledPolicies(1.2), peakPolicy{name: "vpa p95",
		about: "95th percentile of a VPA-style decaying histogram of run peaks plus 15%",
		new:   func() peakEstimator { return &vpaPeaks{} }})
}

// scaledPolicies are the last and the largest earlier peak times f.
func scaledPolicies(f float64) []peakPolicy {
	plus := strconv.FormatFloat(100*(f-1), 'g', 4, 64)
	return []peakPolicy{
		{name: "last x" + strconv.FormatFloat(f, 'f', -1, 64), about: "the previous run's peak plus " + plus + "%",
			new: func() peakEstimator { return &scaledPeak{factor: f} }},
		{name: "max x" + strconv.FormatFloat(f, 'f', -1, 64), about: "the largest peak of all earlier runs plus " + plus + "%",
			new: func() peakEstimator { return &scaledPeak{factor: f, ofMax: true} }},
	}
}

// scaledPeak is the last (or the largest) earlier peak times factor.
type scaledPeak struct {
	factor     float64
	ofMax      bool
	last, most float64
}

func (s *scaledPeak) limit(float64) (bytes, pHold float64) {
	if s.ofMax {
		return s.factor * s.most, -1
	}
	return s.factor * s.last, -1
}

func (s *scaledPeak) observe(r peakRun) { s.last, s.most = r.peak, math.Max(s.most, r.peak) }

// The VPA-style estimator follows the VPA recommender's memory model with its default
// settings (kubernetes/autoscaler, vertical-pod-autoscaler/pkg/recommender): one
// sample per aggregation interval, the interval's peak, here one run; samples weighted
// by age with a half-life of a day; buckets growing by 5% from 10 MB, a percentile
// read as its bucket's upper edge; a 15% safety margin; at least 250 MiB. It does not
// model VPA's 8-day history cut-off (the trace is shorter), its confidence multiplier
// for young histories, nor its OOM bump (a run that ran out is not rerun here). The
// VPA's memory target is the 90th percentile and its upper bound the 95th; a limit,
// which kills a run it is short of, takes the 95th.
const (
	vpaFirstBucket  = 1e7 // bytes: the width of the first bucket
	vpaGrowth       = 1.05
	vpaMaxBucket    = 1000      // values beyond bucket 1000 (~1e29 bytes) share it
	vpaHalfLife     = 24 * 3600 // seconds
	vpaPercentile   = 0.95
	vpaMargin       = 0.15
	vpaMinimumBytes = 250 << 20
)

// vpaPeaks is a decaying histogram of run peaks.
type vpaPeaks struct {
	weights []float64 // by bucket
	total   float64
	at      float64 // the time weights are decayed to (total 0: no sample yet)
}

// vpaBucket is the bucket holding v bytes: bucket n starts at
// vpaFirstBucket * (vpaGrowth^n - 1) / (vpaGrowth - 1).
func vpaBucket(v float64) int {
	if !(v > 0) {
		return 0
	}
	return min(int(math.Log1p(v*(vpaGrowth-1)/vpaFirstBucket)/math.Log(vpaGrowth)), vpaMaxBucket)
}

// vpaBucketStart is the least value of bucket n, in bytes.
func vpaBucketStart(n int) float64 {
	return vpaFirstBucket * (math.Pow(vpaGrowth, float64(n)) - 1) / (vpaGrowth - 1)
}

func (v *vpaPeaks) observe(r peakRun) {
	// Only the weights' ratios matter to a percentile: decay the old ones to the new
	// sample's time, so that it weighs 1.
	if v.total > 0 && r.end > v.at {
		f := math.Exp2(-(r.end - v.at) / vpaHalfLife)
		for i := range v.weights {
			v.weights[i] *= f
		}
		v.total *= f
	}
	if v.total == 0 {
		v.at = r.end // the trace's times may be 0 or less: 0 is no "not yet"
	}
	v.at = math.Max(v.at, r.end)
	b := vpaBucket(r.peak)
	for len(v.weights) <= b {
		v.weights = append(v.weights, 0)
	}
	v.weights[b]++
	v.total++
}

func (v *vpaPeaks) limit(float64) (bytes, pHold float64) {
	if v.total == 0 {
		return vpaMinimumBytes, -1
	}
	threshold, sum := vpaPercentile*v.total, 0.0
	b := 0
	for ; b < len(v.weights)-1; b++ {
		sum += v.weights[b]
		if sum >= threshold*(1-1e-12) {
			break
		}
	}
	return math.Max(vpaBucketStart(b+1)*(1+vpaMargin), vpaMinimumBytes), -1
}

// autofixPeakPolicy asks autofix's recommender, with the models m, for the limit of each
// run, as the retry of an OOM-killed run of a recurring job whose earlier runs
// succeeded with the peaks the trace shows. The failed limit is half the lowest of
// those peaks: below every candidate that matters, so that what decides is the
// estimate from the history (models.NewContext: a trend fit to the recent peaks and
// their spread) and the models' chance that a limit holds, not the floor. The job
// holds job's resources besides the memory (none: memory is all it pays for), priced
// from the default catalogue; autofix chooses the cheapest limit whose chance of
// holding the run reaches target (0.95 by default, as in recommend and serve). The
// cost cap relative to the failed run is lifted, as the failed limit is a construct;
// so is the node bound (the trace has none).
func autofixPeakPolicy(m *models.Models, job failure.Resources, target float64) peakPolicy {
	rec := recommender.New(oomClassifier{}, m, recommender.Options{
		Catalogue: failure.DefaultCatalogue(), MaxCostMultiple: math.MaxFloat64, MinPSuccess: target})
	about := "autofix's recommender for an OOM-killed run, from the earlier runs' peaks"
	if target != 0.95 {
		about += fmt.Sprintf(", target %g", target)
	}
	if job.GPU > 0 {
		about += ", the job holding one " + job.GPUType
	}
	return peakPolicy{name: "autofix", about: about, new: func() peakEstimator {
		return &autofixPeaks{rec: rec, job: job}
	}}
}

// autofixKeep is how many recent runs an autofixPeaks hands the recommender: more
// than the recent successful runs its estimates read (12), so that the rest of the
// history changes nothing, and few enough to bound the memory per container.
const autofixKeep = 32

// autofixPeaks is autofix's choice for one container.
type autofixPeaks struct {
	rec  *recommender.Recommender
	job  failure.Resources
	runs []failure.Outcome // oldest first, at most 2*autofixKeep
}

func (a *autofixPeaks) observe(r peakRun) {
	if len(a.runs) >= 2*autofixKeep {
		a.runs = append(a.runs[:0], a.runs[len(a.runs)-autofixKeep:]...)
	}
	a.runs = append(a.runs, failure.Outcome{Template: peaksTemplate, Attempt: 1, Resources: a.job, Succeeded: true,
		DurationSeconds: r.seconds(), Usage: failure.Usage{PeakMemoryBytes: int64(math.Round(r.peak))}})
}

// peaksTemplate names the recurring job the runs of a container belong to.
const peaksTemplate = "bench-peaks"

// limit is the memory of the option autofix chooses, and the chance its models give
// that option of holding the run (PFix: the memory is enough).
func (a *autofixPeaks) limit(float64) (bytes, pHold float64) {
	lowest := math.Inf(1)
	runs := a.runs[max(0, len(a.runs)-autofixKeep):]
	var seconds float64
	for _, o := range runs {
		lowest = math.Min(lowest, float64(o.Usage.PeakMemoryBytes))
		seconds = o.DurationSeconds
	}
	if len(runs) == 0 {
		return 0, -1 // nothing to go on; the caller asks only after some runs
	}
	res := a.job
	res.MemoryBytes = max(int64(lowest/2), 1)
	ev := failure.Event{ID: peaksTemplate,
		Job:     failure.Job{Name: peaksTemplate, Template: peaksTemplate, Attempt: 1, Resources: res},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: seconds / 2}}
	rec := a.rec.Recommend(&ev, runs)
	if !rec.Retry || rec.Chosen < 0 {
		// autofix would not retry: the run keeps the limit it was killed at.
		return float64(res.MemoryBytes), 0
	}
	o := &rec.Options[rec.Chosen]
	return float64(o.Resources.MemoryBytes), o.PFix
}

// oomClassifier says every failure is an OOM kill: the benchmark's runs are, by
// construction, and it measures sizing, not classification.
type oomClassifier struct{}

func (oomClassifier) Classify(*failure.Event) failure.Classification {
	return failure.Classification{Category: failure.OOMMemory, Retryable: true, Action: failure.IncreaseMemory,
		Confidence: 1, Rules: []string{peaksTemplate}}
}
