package sim

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/autofix/autofix/failure"
)

// Policy decides how to retry failed runs. It sees what a real cluster gives it and
// nothing of the simulator's ground truth.
type Policy interface {
	// Name identifies the policy in results.
	Name() string
	// Retry returns the configuration of the next attempt after the failure ev, or
	// ok == false to stop retrying. history holds the observed outcomes of earlier
	// runs and attempts of the job's template, oldest first, including the failed
	// attempt ev describes.
	Retry(ev *failure.Event, history []failure.Outcome) (opt failure.Option, ok bool)
}

// Options tune a simulation.
type Options struct {
	// Jobs overrides the scenario's number of runs when positive.
	Jobs int
	// HistoryLimit bounds the outcomes passed to a policy (most recent kept). Default 40.
	HistoryLimit int
	// Record, when set, is called after every retry with what the policy saw, what it
	// chose and what happened: the examples the models are trained on.
	Record func(Retry)
	// Corpus is the real messages failures draw their text from when the scenario's
	// text is real; nil means the embedded ones (RealText). Unused for rendered text.
	Corpus *Corpus
	// Classify, when set, labels the outcome of every failed attempt in the job's
	// history with the category it gives the attempt's failure event, as the ledger
	// records each failure with its classification (engine, ledger). Nil leaves
	// them unlabelled: what the cluster alone records.
	Classify func(*failure.Event) failure.Category
}

// Retry is one retry as a policy and the cluster see it.
type Retry struct {
	// Event is the failure the retry answers; History what the policy was given.
	Event   *failure.Event
	History []failure.Outcome
	// Option is the configuration the policy chose, Outcome what the cluster recorded
	// of the retry, and Failure the retry's own failure event (nil if it succeeded).
	Option  failure.Option
	Outcome failure.Outcome
	Failure *failure.Event
}

// Result measures a policy on a scenario.
type Result struct {
	Policy   string `json:"policy"`
	Scenario string `json:"scenario"`
	Seed     uint64 `json:"seed"`
	// Jobs is the number of runs; Failed those whose first attempt failed;
	// Remediable those of them some retry could fix.
	Jobs       int `json:"jobs"`
	Failed     int `json:"failed"`
	Remediable int `json:"remediable"`
	// Fixed counts remediable failures the policy's retries fixed, FirstRetryFixed
	// those fixed by the first retry.
	Fixed           int     `json:"fixed"`
	FirstRetryFixed int     `json:"firstRetryFixed"`
	FixRate         float64 `json:"fixRate"`
	FirstRetryRate  float64 `json:"firstRetryFixRate"`
	// Retries is the number of retries made.
	Retries int `json:"retries"`
	// Cost is the money spent on retries, failed ones included; OracleCost what the
	// oracle spends on the same failures.
	Cost         float64 `json:"cost"`
	OracleCost   float64 `json:"oracleCost"`
	CostVsOracle float64 `json:"costVsOracle"`
	// FalseRetries are retries of failures no retry can fix; WastedCost the cost of
	// retries that failed.
	FalseRetries int     `json:"falseRetries"`
	WastedCost   float64 `json:"wastedCost"`
	// RerunCost is what a person's re-runs of the remediable failures the policy left
	// unfixed cost: for each, what the oracle spends on it (its configuration for the
	// job, meeting the same luck the oracle meets). OracleUnfixed counts the remediable failures the oracle's retries did not fix
	// (bad luck outlasting the budget), OracleRerunCost their re-runs. Price turns
	// them, and a person's time, into the cost per fixed failure.
	RerunCost       float64 `json:"rerunCost"`
	OracleUnfixed   int     `json:"oracleUnfixed"`
	OracleRerunCost float64 `json:"oracleRerunCost"`
	// ByCause breaks the failures down by their true cause.
	ByCause map[failure.Category]*CauseResult `json:"byCause"`
	// Text is where the failure events' text came from (Scenario.Text). With real
	// text, RealText counts the failure events shown to the policy that carried a
	// real message, and RenderedFallback those that kept the simulator's text because
	// no real message has their cause's category (and retry decision); NoRealText
	// lists those causes.
	Text             Text               `json:"text"`
	RealText         int                `json:"realText,omitempty"`
	RenderedFallback int                `json:"renderedFallback,omitempty"`
	NoRealText       []failure.Category `json:"noRealText,omitempty"`
	// Telemetry is what the cluster measured of the runs' usage (Scenario.Telemetry).
	Telemetry Telemetry `json:"telemetry"`
}

// CauseResult is the part of a Result for one true cause of failure.
type CauseResult struct {
	Failed          int     `json:"failed"`
	Remediable      int     `json:"remediable"`
	Fixed           int     `json:"fixed"`
	FirstRetryFixed int     `json:"firstRetryFixed"`
	Cost            float64 `json:"cost"`
	OracleCost      float64 `json:"oracleCost"`
	RerunCost       float64 `json:"rerunCost"`
	FalseRetries    int     `json:"falseRetries"`
}

// Run simulates the scenario's runs under policy p.
func Run(s *Scenario, p Policy, opts Options) (Result, error) {
	if opts.HistoryLimit <= 0 {
		opts.HistoryLimit = 40
	}
	jobs := s.Jobs
	if opts.Jobs > 0 {
		jobs = opts.Jobs
	}
	res := Result{Policy: p.Name(), Scenario: s.Name, Seed: s.Seed, ByCause: map[failure.Category]*CauseResult{},
		Text: s.TextSource(), Telemetry: s.TelemetrySource()}
	switch {
	case res.Text != TextReal:
		opts.Corpus = nil
	case opts.Corpus == nil:
		c, err := RealText()
		if err != nil {
			return res, err
		}
		opts.Corpus = c
	}
	ts := s.templates()
	histories := make([][]failure.Outcome, len(ts))
	for k := 0; res.Jobs < jobs; k++ {
		for _, t := range ts {
			if res.Jobs == jobs {
				break
			}
			res.Jobs++
			if err := s.episode(t, k, p, &histories[t.index], opts, &res); err != nil {
				return res, err
			}
		}
	}
	res.FixRate = ratio(res.Fixed, res.Remediable)
	res.FirstRetryRate = ratio(res.FirstRetryFixed, res.Remediable)
	if res.OracleCost > 0 {
		res.CostVsOracle = res.Cost / res.OracleCost
	}
	return res, nil
}

// episode runs run k of t: the first attempt and, if it fails, the policy's retries.
func (s *Scenario) episode(t *template, k int, p Policy, history *[]failure.Outcome, opts Options, res *Result) error {
	ru := s.newRun(t, k)
	opt := t.config
	out := s.attempt(ru, 0, opt)
	first := s.outcome(t, 0, opt, out)
	var ev *failure.Event
	var use textUse
	if !out.ok {
		var err error
		if ev, use, err = s.observe(ru, 0, opt, out, opts, &first); err != nil {
			return err
		}
	}
	*history = append(*history, first)
	if out.ok {
		return nil
	}
	res.Failed++
	remediable := s.remediable(ru)
	cr := res.ByCause[out.cause]
	if cr == nil {
		cr = &CauseResult{}
		res.ByCause[out.cause] = cr
	}
	cr.Failed++
	rerun := 0.0
	if remediable {
		res.Remediable++
		cr.Remediable++
		oc, fixed := s.oracleCost(ru, opt, out)
		res.OracleCost += oc
		cr.OracleCost += oc
		rerun = oc
		if !fixed {
			res.OracleUnfixed++
			res.OracleRerunCost += rerun
		}
	}
	// A remediable failure the policy leaves unfixed is re-run by hand.
	fixedBefore := res.Fixed
	defer func() {
		if remediable && res.Fixed == fixedBefore {
			res.RerunCost += rerun
			cr.RerunCost += rerun
		}
	}()
	if _, isOracle := p.(oracle); isOracle {
		return s.oracleEpisode(ru, opt, out, remediable, history, res, cr)
	}
	for a := 1; a <= s.RetryBudget; a++ {
		countText(res, use, out.cause)
		seen := recent(*history, opts.HistoryLimit)
		next, retry := p.Retry(ev, seen)
		if !retry {
			break
		}
		opt = next
		out = s.attempt(ru, a, opt)
		o := s.outcome(t, a, opt, out)
		// The retry's own failure: the next retry answers it, and the recorder and
		// the classifier read it.
		var fev *failure.Event
		if !out.ok && (a < s.RetryBudget || opts.Record != nil || opts.Classify != nil) {
			var err error
			if fev, use, err = s.observe(ru, a, opt, out, opts, &o); err != nil {
				return err
			}
		}
		*history = append(*history, o)
		if opts.Record != nil {
			opts.Record(Retry{Event: ev, History: seen, Option: opt, Outcome: o, Failure: fev})
		}
		s.count(res, cr, remediable, a, out)
		if out.ok {
			break
		}
		ev = fev
	}
	return nil
}

// observe renders the failure of attempt a as the policies receive it, through the
// wire, and, with opts.Classify, labels its outcome o with the category it is given.
func (s *Scenario) observe(ru *run, a int, opt failure.Option, out result, opts Options, o *failure.Outcome) (*failure.Event, textUse, error) {
	rendered, use := s.failureEvent(ru, a, opt, out, opts.Corpus)
	ev, err := wire(rendered)
	if err != nil {
		return nil, use, err
	}
	if opts.Classify != nil {
		o.Category = opts.Classify(&ev)
	}
	return &ev, use, nil
}

// count adds one retry to the result.
func (s *Scenario) count(res *Result, cr *CauseResult, remediable bool, a int, out result) {
	res.Retries++
	res.Cost += out.cost
	cr.Cost += out.cost
	if !remediable {
		res.FalseRetries++
		cr.FalseRetries++
	}
	if !out.ok {
		res.WastedCost += out.cost
		return
	}
	if remediable {
		res.Fixed++
		cr.Fixed++
		if a == 1 {
			res.FirstRetryFixed++
			cr.FirstRetryFixed++
		}
	}
}

// wire encodes ev as the watcher publishes it and decodes it as the consumer does.
func wire(ev failure.Event) (failure.Event, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return failure.Event{}, fmt.Errorf("encode simulated event %s: %w", ev.ID, err)
	}
	out, err := failure.Decode(data)
	if err != nil {
		return failure.Event{}, fmt.Errorf("decode simulated event %s: %w", ev.ID, err)
	}
	return out, nil
}

// outcome is what the cluster records of an attempt.
func (s *Scenario) outcome(t *template, a int, opt failure.Option, out result) failure.Outcome {
	o := failure.Outcome{
		Template: t.name, Attempt: a + 1, Resources: opt.Resources, Params: copyParams(opt.Params),
		Succeeded: out.ok, DurationSeconds: math.Round(out.seconds), Node: out.node, Cost: out.cost,
		Usage: s.TelemetrySource().outcomeUsage(failure.Usage{PeakMemoryBytes: int64(out.peakMem),
			PeakGPUMemoryBytes: int64(out.peakGPU), PeakEphemeralStorageBytes: int64(out.peakDisk)}),
	}
	// Category stays empty: a cluster records what failed, not why; policies
	// classify the events themselves (Options.Classify labels them as the ledger
	// does).
	return o
}

func recent(h []failure.Outcome, n int) []failure.Outcome {
	if len(h) > n {
		h = h[len(h)-n:]
	}
	return append([]failure.Outcome(nil), h...)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
