package sim

import (
	"fmt"
	"math"
	"strings"

	"github.com/autofix/autofix/failure"
)

// Baseline returns one of the policies autofix is compared with: "none" (never
// retry), "same" (plain retry), "double" (Argo-style: twice the memory on every retry,
// twice the GPUs after a GPU out-of-memory), "vpa" (the Vertical Pod Autoscaler's OOM
// bump: max(1.2 x peak, peak + 100 MiB) after an OOM, a plain retry otherwise) and
// "oracle" (knows the true needs: retries once with the cheapest sufficient
// configuration, and never retries what no retry can fix).
func Baseline(name string) (Policy, error) {
	switch name {
	case "none":
		return none{}, nil
	case "same":
		return same{}, nil
	case "double":
		return double{}, nil
	case "vpa":
		return vpa{}, nil
	case "oracle":
		return oracle{}, nil
	}
	return nil, fmt.Errorf("unknown baseline policy %q (want none, same, double, vpa or oracle)", name)
}

// Baselines names the baseline policies.
func Baselines() []string { return []string{"none", "same", "double", "vpa", "oracle"} }

type none struct{}

func (none) Name() string { return "none" }
func (none) Retry(*failure.Event, []failure.Outcome) (failure.Option, bool) {
	return failure.Option{}, false
}

type same struct{}

func (same) Name() string { return "same" }
func (same) Retry(ev *failure.Event, _ []failure.Outcome) (failure.Option, bool) {
	return current(ev), true
}

type double struct{}

func (double) Name() string { return "double" }
func (double) Retry(ev *failure.Event, _ []failure.Outcome) (failure.Option, bool) {
	opt := current(ev)
	opt.Resources.MemoryBytes *= 2
	if opt.Resources.GPU > 0 && looksLikeGPUOOM(ev) {
		opt.Resources.GPU *= 2
	}
	return opt, true
}

type vpa struct{}

func (vpa) Name() string { return "vpa" }
func (vpa) Retry(ev *failure.Event, _ []failure.Outcome) (failure.Option, bool) {
	opt := current(ev)
	if ev.Failure.Reason == "OOMKilled" {
		peak := ev.Failure.Usage.PeakMemoryBytes
		if peak == 0 {
			peak = opt.Resources.MemoryBytes
		}
		opt.Resources.MemoryBytes = int64(math.Max(1.2*float64(peak), float64(peak+100<<20)))
	}
	return opt, true
}

// oracle is handled by the harness, which gives it the ground truth.
type oracle struct{}

func (oracle) Name() string { return "oracle" }
func (oracle) Retry(*failure.Event, []failure.Outcome) (failure.Option, bool) {
	return failure.Option{}, false
}

// current is the configuration the failed attempt ran with.
func current(ev *failure.Event) failure.Option {
	return failure.Option{Resources: ev.Job.Resources, Params: copyParams(ev.Job.Params)}
}

// looksLikeGPUOOM is what a script watching for GPU out-of-memory in logs would test.
func looksLikeGPUOOM(ev *failure.Event) bool {
	l := strings.ToLower(ev.Failure.LogTail)
	return strings.Contains(l, "out of memory") && !strings.Contains(l, "killed")
}

// oracleCost is what the oracle spends to fix a remediable failure: the cost of its
// attempts with the cheapest sufficient configuration, which can still meet bad luck
// (fixed is false when bad luck outlasted the retry budget).
func (s *Scenario) oracleCost(ru *run, failed failure.Option, out result) (cost float64, fixed bool) {
	s.oracleAttempts(s.newRunLike(ru), failed, out, func(_ int, r result) {
		cost += r.cost
		fixed = fixed || r.ok
	})
	return cost, fixed
}

// newRunLike returns a fresh copy of ru (its bad node as the first attempt left it).
func (s *Scenario) newRunLike(ru *run) *run {
	c := *ru
	return &c
}

// oracleAttempts makes the oracle's retries: at most the retry budget, stopping at
// the first success.
func (s *Scenario) oracleAttempts(ru *run, failed failure.Option, out result, each func(a int, r result)) {
	var avoid []string
	if out.cause == failure.Hardware {
		avoid = []string{out.node}
	}
	opt, ok := s.cheapestSufficient(ru, failed, avoid)
	if !ok {
		return
	}
	for a := 1; a <= s.RetryBudget; a++ {
		r := s.attempt(ru, a, opt)
		each(a, r)
		if r.ok {
			return
		}
		if r.cause == failure.Hardware {
			opt.AvoidNodes = append(opt.AvoidNodes, r.node)
		}
	}
}

// oracleEpisode plays the oracle as the policy under test.
func (s *Scenario) oracleEpisode(ru *run, failed failure.Option, out result, remediable bool, history *[]failure.Outcome, res *Result, cr *CauseResult) error {
	if !remediable {
		return nil
	}
	s.oracleAttempts(ru, failed, out, func(a int, r result) {
		s.count(res, cr, remediable, a, r)
	})
	return nil
}
