package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/failure"
)

// peaksFile is the trace's file in the --data directory.
const peaksFile = "pod_gpu_memory_used_bytes_anon.csv"

type peaksOptions struct {
	data       string
	window     int
	minHistory int
	json       bool
	models     string
	jobGPU     string
	target     float64
	factors    []float64
}

func newBenchPeaksCmd() *cobra.Command {
	var o peaksOptions
	cmd := &cobra.Command{
		Use:   "bench-peaks",
		Short: "Test limits chosen from earlier peaks on a real GPU memory trace: coverage against over-provisioning",
		Long: `Bench-peaks reads a real per-container GPU memory series (Alibaba's GenAI serving
trace, 2026: ` + peaksFile + ` in --data, one sample about every
57 s) and cuts each container's series into consecutive runs of --window samples; a
run's peak is the most it used. For every run with at least --min-history earlier runs
of its container, each policy chooses its limit from those earlier runs only:

  autofix    autofix's recommender, as for the retry of an OOM-killed run of a
             recurring job whose earlier runs succeeded with those peaks
  last x1.2  the previous run's peak plus 20%
  max x1.2   the largest earlier peak plus 20%
  vpa p95    95th percentile of a VPA-style histogram of earlier peaks, decaying
             with a half-life of a day, plus 15%
  oracle     the run's own peak

and is scored by coverage (runs whose peak is within the limit: no OOM kill), the
over-provisioning of covered runs (limit / peak - 1, mean and median) and GB-hours
provisioned over the oracle's, with and without a rerun at the peak for each run
killed; also by its coverage of spikes, runs that peak over 1.3x the median of their
container's last 12 runs. For autofix, "predicted" is the coverage it expected: the
mean chance its models gave its limits. Runs stop at gaps of over 10 minutes;
incomplete windows and runs that used no memory are left out. docs/benchmark.md
describes the assumptions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchPeaks(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "../shared/data/alibaba-genai-2026", "directory holding "+peaksFile+" (or the file)")
	f.IntVar(&o.window, "window", 60, "samples per run (60 is about an hour)")
	f.IntVar(&o.minHistory, "min-history", 3, "earlier runs a container needs before its runs are scored")
	f.BoolVar(&o.json, "json", false, "print one JSON object instead of a table")
	f.StringVar(&o.models, "models", "", "models artifact for autofix (default: the embedded models)")
	f.StringVar(&o.jobGPU, "job-gpu", "", "price autofix's job as holding one GPU of this catalogue type besides the memory")
	f.Float64Var(&o.target, "target", 0.95, "autofix chooses the cheapest limit whose chance of holding the run reaches this")
	f.Float64SliceVar(&o.factors, "factors", nil, "also score last xF and max xF for each factor F (e.g. 1.3,1.4,1.5)")
	return cmd
}

func runBenchPeaks(out io.Writer, o peaksOptions) error {
	switch {
	case o.window < 2:
		// A run of one sample lasts no time: there would be no GB-hours to count.
		return fmt.Errorf("--window %d: want at least 2 samples", o.window)
	case o.minHistory < 1:
		return fmt.Errorf("--min-history %d: want at least 1 earlier run", o.minHistory)
	case !(o.target > 0 && o.target < 1):
		return fmt.Errorf("--target %v: want a probability between 0 and 1", o.target)
	case len(o.factors) > maxFactors:
		return fmt.Errorf("--factors: %d factors, want at most %d", len(o.factors), maxFactors)
	}
	policies := baselinePolicies()
	for _, f := range o.factors {
		if !(f >= 1 && f <= 100) {
			return fmt.Errorf("--factors %v: want factors from 1 to 100", f)
		}
		policies = append(policies, scaledPolicies(f)...)
	}
	var job failure.Resources
	if o.jobGPU != "" {
		if _, ok := failure.DefaultCatalogue().GPU(o.jobGPU); !ok {
			return fmt.Errorf("--job-gpu %q: not a GPU type of the default catalogue", o.jobGPU)
		}
		job = failure.Resources{GPU: 1, GPUType: o.jobGPU}
	}
	m, err := loadModels(o.models)
	if err != nil {
		return fmt.Errorf("--models %s: %w", o.models, err)
	}
	path, err := peaksPath(o.data)
	if err != nil {
		return err
	}
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	defer func() { _ = file.Close() }()
	rep, err := benchPeaks(file, o.window, o.minHistory, append([]peakPolicy{autofixPeakPolicy(m, job, o.target)}, policies...))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	rep.Data = path
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printPeaksReport(out, &rep)
	return nil
}

// peaksPath finds the trace: the file in dir, or dir if it is the file itself.
func peaksPath(dir string) (string, error) {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("--data %s: no such directory; point --data at the directory holding %s "+
			"(the Alibaba GenAI trace, see docs/benchmark.md)", dir, peaksFile)
	}
	if err != nil {
		return "", fmt.Errorf("--data: %w", err)
	}
	path := dir
	if st.IsDir() {
		path = filepath.Join(dir, peaksFile)
		if st, err = os.Stat(path); err != nil {
			return "", fmt.Errorf("--data %s: %w", dir, err)
		}
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("--data %s: %s is not a regular file", dir, path)
	}
	return path, nil
}

// maxFactors bounds --factors.
const maxFactors = 16

// peaksReport is what bench-peaks measured.
type peaksReport struct {
	Data       string `json:"data,omitempty"`
	Window     int    `json:"window"`
	MinHistory int    `json:"minHistory"`
	Samples    int64  `json:"samples"`
	Containers int    `json:"containers"`
	// Runs are the complete windows in which memory was used; Scored those with
	// enough earlier runs. IdleRuns used none; DroppedSamples were in windows cut
	// short by a gap or by the end of a series.
	Runs           int     `json:"runs"`
	Scored         int     `json:"scored"`
	IdleRuns       int     `json:"idleRuns"`
	DroppedSamples int64   `json:"droppedSamples"`
	RunSeconds     float64 `json:"meanRunSeconds"`
	// Spikes are the scored runs whose peak is over spikeFactor times the median of
	// their container's last spikeWindow peaks.
	Spikes   int          `json:"spikes"`
	Policies []peakResult `json:"policies"`
}

// A spike is a run that peaks over spikeFactor times the median peak of its
// container's last spikeWindow runs: a jump no margin for the usual noise covers.
const (
	spikeFactor = 1.3
	spikeWindow = 12
)

// peakResult scores one policy over the scored runs.
type peakResult struct {
	Policy string `json:"policy"`
	About  string `json:"about"`
	Runs   int    `json:"runs"`
	// OOMs are the runs whose peak passed the limit; Coverage the share that did not.
	OOMs     int     `json:"ooms"`
	Coverage float64 `json:"coverage"`
	// SpikeCoverage is the coverage of the spikes.
	SpikeCoverage float64 `json:"spikeCoverage"`
	// MeanOver and MedianOver are limit/peak - 1 over the covered runs.
	MeanOver   float64 `json:"meanOverProvisioning"`
	MedianOver float64 `json:"medianOverProvisioning"`
	// GBHours is the sum of limits times durations over the oracle's (the peaks');
	// WithReruns adds, for each run killed, a rerun at its peak.
	GBHours    float64 `json:"gbHoursVsOracle"`
	WithReruns float64 `json:"gbHoursWithRerunsVsOracle"`
	// Predicted is the mean chance the policy gave its limits of holding, for a
	// policy that gives one: the coverage it expected.
	Predicted *float64 `json:"predictedCoverage,omitempty"`
}

// peakScore accumulates a policy's limits against the runs' peaks.
type peakScore struct {
	runs, ooms, spikes, spikeOOMs int
	// overs are limit/peak - 1 of the covered runs.
	overs []float64
	// GB-hours provisioned, used, and used by the reruns of runs killed.
	limitGBh, peakGBh, rerunGBh float64
	// predicted counts the runs whose limit came with a chance of holding; pHold
	// sums those chances.
	predicted int
	pHold     float64
}

func (s *peakScore) add(limit, pHold float64, r peakRun, spike bool) {
	s.runs++
	if spike {
		s.spikes++
		if r.peak > limit {
			s.spikeOOMs++
		}
	}
	if pHold >= 0 {
		s.predicted++
		s.pHold += pHold
	}
	h := r.seconds() / 3600 / 1e9
	s.limitGBh += limit * h
	s.peakGBh += r.peak * h
	if r.peak > limit {
		s.ooms++
		s.rerunGBh += r.peak * h
		return
	}
	s.overs = append(s.overs, limit/r.peak-1)
}

func (s *peakScore) result(p peakPolicy) peakResult {
	res := peakResult{Policy: p.name, About: p.about, Runs: s.runs, OOMs: s.ooms}
	if s.runs == 0 {
		return res
	}
	res.Coverage = float64(s.runs-s.ooms) / float64(s.runs)
	if s.spikes > 0 {
		res.SpikeCoverage = float64(s.spikes-s.spikeOOMs) / float64(s.spikes)
	}
	if s.predicted > 0 {
		p := s.pHold / float64(s.predicted)
		res.Predicted = &p
	}
	if len(s.overs) > 0 {
		res.MeanOver = sumOf(s.overs) / float64(len(s.overs))
		res.MedianOver = medianOf(s.overs)
	}
	if s.peakGBh > 0 {
		res.GBHours = s.limitGBh / s.peakGBh
		res.WithReruns = (s.limitGBh + s.rerunGBh) / s.peakGBh
	}
	return res
}

func sumOf(xs []float64) float64 {
	var t float64
	for _, x := range xs {
		t += x
	}
	return t
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func printPeaksReport(out io.Writer, r *peaksReport) {
	fmt.Fprintf(out, "%s\n%d samples, %d containers; runs of %d samples (%.0f min); %d runs scored, each after at least %d earlier runs of its container\n",
		r.Data, r.Samples, r.Containers, r.Window, r.RunSeconds/60, r.Scored, r.MinHistory)
	fmt.Fprintf(out, "(%d runs in all; %d used no memory and %d samples in incomplete windows were left out)\n",
		r.Runs, r.IdleRuns, r.DroppedSamples)
	fmt.Fprintf(out, "%d of the scored runs are spikes: they peak over %gx the median of their container's last %d runs\n\n",
		r.Spikes, spikeFactor, spikeWindow)
	fmt.Fprintln(out, "| policy | runs | coverage | predicted | of spikes | OOMs | over-provisioning mean | median | GB-h vs oracle | with reruns |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|")
	for _, p := range r.Policies {
		predicted, spikes := "—", "—"
		if p.Predicted != nil {
			predicted = fmt.Sprintf("%.3f", *p.Predicted)
		}
		if r.Spikes > 0 {
			spikes = fmt.Sprintf("%.3f", p.SpikeCoverage)
		}
		fmt.Fprintf(out, "| %s | %d | %.3f | %s | %s | %d | %.1f%% | %.1f%% | %.2fx | %.2fx |\n", p.Policy, p.Runs, p.Coverage,
			predicted, spikes, p.OOMs, 100*p.MeanOver, 100*p.MedianOver, p.GBHours, p.WithReruns)
	}
	fmt.Fprintln(out)
	for _, p := range r.Policies {
		fmt.Fprintf(out, "  %-10s %s\n", p.Policy, p.About)
	}
}

// benchPeaks reads a trace, cuts it into runs of window samples and scores the
// policies (and the oracle, last) on every run after minHistory earlier runs of its
// container. Memory stays bounded by the containers, not the samples: each keeps an
// open window and the policies' state.
func benchPeaks(r io.Reader, window, minHistory int, policies []peakPolicy) (peaksReport, error) {
	rep := peaksReport{Window: window, MinHistory: minHistory}
	scores := make([]peakScore, len(policies)+1)
	var seconds float64
	c := newRunCutter(window, func(ct *cutContainer, run peakRun) error {
		if run.peak <= 0 {
			rep.IdleRuns++
			return nil
		}
		rep.Runs++
		seconds += run.seconds()
		if ct.estimators == nil {
			for _, p := range policies {
				ct.estimators = append(ct.estimators, p.new())
			}
		}
		if ct.runs >= minHistory {
			if rep.Scored >= maxScoredRuns {
				return fmt.Errorf("more than %d runs to score: use a larger --window", maxScoredRuns)
			}
			rep.Scored++
			spike := run.peak > spikeFactor*medianOf(ct.recent)
			if spike {
				rep.Spikes++
			}
			for i, e := range ct.estimators {
				limit, pHold := e.limit(run.start)
				scores[i].add(limit, pHold, run, spike)
			}
			scores[len(policies)].add(run.peak, -1, run, spike)
		}
		for _, e := range ct.estimators {
			e.observe(run)
		}
		if len(ct.recent) == spikeWindow {
			ct.recent = append(ct.recent[:0], ct.recent[1:]...)
		}
		ct.recent = append(ct.recent, run.peak)
		ct.runs++
		return nil
	})
	n, err := readPeaksCSV(r, c.add)
	rep.Samples = n
	if err != nil {
		return rep, err
	}
	rep.DroppedSamples = c.finish()
	rep.Containers = len(c.containers)
	if rep.Runs > 0 {
		rep.RunSeconds = seconds / float64(rep.Runs)
	}
	oracle := peakPolicy{name: "oracle", about: "the run's own peak"}
	for i, p := range append(slices.Clone(policies), oracle) {
		rep.Policies = append(rep.Policies, scores[i].result(p))
	}
	return rep, nil
}

// maxScoredRuns bounds the runs one benchmark scores (the real trace has under
// 3,000 at the default window, 80,000 at a window of two samples).
const maxScoredRuns = 1 << 21
