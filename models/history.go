package models

import (
	"math"

	"github.com/autofix/autofix/failure"
)

// boundsWindow is how many recent runs with something to say the bounds use.
const boundsWindow = 12

// runsOf splits a template's history (oldest first) into runs: a run is a first
// attempt and the retries that follow it (attempt numbers that do not fall; a
// ledger may record one attempt twice, from its failure event and from its end).
// An outcome without an attempt number is a run of its own. current is the index of
// the run the failure being planned belongs to, when the history holds it (a last
// run that has not succeeded and has not passed the event's attempt), else
// len(runs).
func runsOf(history []failure.Outcome, attempt int) (runs [][]failure.Outcome, current int) {
	start := 0
	for i := 1; i <= len(history); i++ {
		if i == len(history) || history[i].Attempt <= 1 || history[i].Attempt < history[i-1].Attempt {
			runs = append(runs, history[start:i])
			start = i
		}
	}
	current = len(runs)
	if n := len(runs); n > 0 && attempt > 0 {
		last := runs[n-1]
		done := false
		for _, h := range last {
			done = done || h.Succeeded
		}
		if !done && last[len(last)-1].Attempt <= attempt {
			current = n - 1
		}
	}
	return runs, current
}

// collect gathers, for each run before current, the interval its outcomes bound a
// need to: ranOut and enough return, for one attempt, the limit it showed the need
// above (0: none) and the limit it showed the need within (0: none). The most recent
// boundsWindow runs with a bound are kept.
func collect(runs [][]failure.Outcome, current int, ranOut, enough func(*failure.Outcome) float64) []bound {
	var out []bound
	for r := min(current, len(runs)) - 1; r >= 0 && len(out) < boundsWindow; r-- {
		b := bound{run: r, hi: math.Inf(1)}
		for i := range runs[r] {
			h := &runs[r][i]
			b.lo = math.Max(b.lo, ranOut(h))
			if e := enough(h); e > 0 {
				b.hi = math.Min(b.hi, e)
			}
		}
		if (b.lo > 0 || !math.IsInf(b.hi, 1)) && b.lo < b.hi {
			out = append(out, b)
		}
	}
	return out
}

// memoryBounds is what the memory limits of the template's runs say of the need.
func memoryBounds(runs [][]failure.Outcome, current int, floor float64) *Bounds {
	return limitBounds(runs, current, floor, failure.OOMMemory,
		func(h *failure.Outcome) (limit, peak int64) { return h.Resources.MemoryBytes, h.Usage.PeakMemoryBytes })
}

// diskBounds is what the ephemeral-storage limits of the template's runs say of the
// local-storage need. A run without a limit says nothing.
func diskBounds(runs [][]failure.Outcome, current int, floor float64) *Bounds {
	return limitBounds(runs, current, floor, failure.DiskFull,
		func(h *failure.Outcome) (limit, peak int64) {
			return h.Resources.EphemeralStorageBytes, h.Usage.PeakEphemeralStorageBytes
		})
}

// limitBounds is what the limits of one resource (of) say of its need: a run that
// failed for want of it (category, or a peak at 98% of its limit) needed more than
// its limit, one that succeeded at most its limit. A run without a limit says nothing.
func limitBounds(runs [][]failure.Outcome, current int, floor float64, category failure.Category,
	of func(*failure.Outcome) (limit, peak int64)) *Bounds {
	obs := collect(runs, current, func(h *failure.Outcome) float64 {
		limit, peak := of(h)
		if lim := float64(limit); !h.Succeeded && lim > 0 && (h.Category == category || peak > 0 && float64(peak) >= 0.98*lim) {
			return lim
		}
		return 0
	}, func(h *failure.Outcome) float64 {
		if limit, _ := of(h); h.Succeeded {
			return float64(limit)
		}
		return 0
	})
	return fitBounds(obs, current, floor)
}

// gpuBounds is what the GPU setups of the template's runs with gpus GPUs say of the
// per-GPU need at tunables tu (the failed run's): a run that succeeded needed at most
// the usable memory of its GPU model, one that ran out of GPU memory more, each
// carried over from its own tunables to tu by the scaling the models assume
// (gpuScale from tu, so that a candidate with a run's own setup meets that run's
// bound exactly). The current run's floor is the usable memory of the failed setup,
// or more if an earlier attempt of the run ran out with more.
func gpuBounds(runs [][]failure.Outcome, current int, failed failure.Resources, tu Tunables,
	declared map[string]failure.Tunable, cat failure.Catalogue) *Bounds {
	at := func(h *failure.Outcome) float64 {
		capacity := float64(cat.GPUMemory(h.Resources.GPUType))
		if h.Resources.GPU != failed.GPU || capacity == 0 {
			return 0
		}
		return capacity * usableGPU / gpuScale(tu, TunablesOf(h.Params, declared))
	}
	ranOut := func(h *failure.Outcome) float64 {
		capacity := float64(cat.GPUMemory(h.Resources.GPUType))
		if !h.Succeeded && (h.Category == failure.OOMGPU || capacity > 0 && float64(h.Usage.PeakGPUMemoryBytes) >= 0.9*capacity) {
			return at(h)
		}
		return 0
	}
	obs := collect(runs, current, ranOut, func(h *failure.Outcome) float64 {
		if h.Succeeded {
			return at(h)
		}
		return 0
	})
	floor := float64(cat.GPUMemory(failed.GPUType)) * usableGPU
	if current < len(runs) {
		for i := range runs[current] {
			floor = math.Max(floor, ranOut(&runs[current][i]))
		}
	}
	return fitBounds(obs, current, floor)
}
