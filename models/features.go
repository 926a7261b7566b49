package models

import (
	"math"

	"github.com/autofix/autofix/failure"
)

// gpuStaticShare is the share of a job's per-GPU memory taken by weights and optimizer
// state (the rest is activations) that the scaling of GPU memory with tunables assumes.
// The models learn how far to trust the assumption.
const gpuStaticShare = 0.4

// usableGPU is the share of a GPU's memory a job can allocate.
const usableGPU = 0.96

// gpuScale is how a job's per-GPU memory need changes from tunables from to to.
func gpuScale(from, to Tunables) float64 {
	if from == to {
		return 1
	}
	static := precStatic(to.Precision) / precStatic(from.Precision)
	act := precAct(to.Precision) / precAct(from.Precision) * ckpt(to.Checkpointing) / ckpt(from.Checkpointing)
	if from.MicroBatch > 0 && to.MicroBatch > 0 {
		act *= float64(to.MicroBatch) / float64(from.MicroBatch)
	}
	return gpuStaticShare*static + (1-gpuStaticShare)*act
}

func precStatic(p string) float64 {
	if p == "fp32" {
		return 1.5
	}
	return 1
}

func precAct(p string) float64 {
	if p == "fp32" {
		return 2
	}
	return 1
}

func ckpt(on bool) float64 {
	if on {
		return 0.3
	}
	return 1
}

// The feature vectors. Each starts with a constant 1 (the intercept).
const (
	memFeatures      = 8
	gpuFeatures      = 7
	deadlineFeatures = 3
)

// memoryFeatures describe a candidate memory limit against what is known of the
// need: its distance above the OOM floor, and, with history, its distance above the
// estimate in units of the estimate's spread; with neither, its distance from the
// failed limit (a run that failed for another reason may not have reached its peak).
func memoryFeatures(c *Context, mem float64, x []float64) []float64 {
	return needFeatures(c.Memory(), float64(c.Failed.MemoryBytes), mem, x)
}

// diskFeatures describe a candidate ephemeral-storage limit as memoryFeatures do a
// memory limit.
func diskFeatures(c *Context, disk float64, x []float64) []float64 {
	return needFeatures(c.Disk, float64(c.Failed.EphemeralStorageBytes), disk, x)
}

// needFeatures describe a candidate limit v of a resource against what is known of
// the need n, and the limit that failed.
func needFeatures(n Need, failed, v float64, x []float64) []float64 {
	x = append(x[:0], 1)
	// The run was stopped at its floor: no more than that fails again.
	below := 0.0
	if n.Floor > 0 && v <= n.Floor {
		below = 1
	}
	x = append(x, below)
	est := n.Estimate
	if est > 0 && n.Floor > est {
		est = n.Floor // the history underestimates: the run is past it
	}
	switch {
	case est > 0:
		z := math.Log(v/est) / math.Max(n.Spread, 0.02)
		return append(x, 1, clamp(z, -8, 8), 0, 0, 0, 0)
	case n.Floor > 0:
		u := math.Log(v / n.Floor)
		return append(x, 0, 0, clamp(u, -1, 3), clamp(u*u, 0, 9), 0, 0)
	}
	u0 := 0.0
	if failed > 0 {
		u0 = math.Log(v / failed)
	}
	return append(x, 0, 0, 0, 0, 1, clamp(u0, -1, 3))
}

// gpuFeatureVec describes a candidate GPU setup against its expected per-GPU need:
// the log of the usable memory over the need, by where the need comes from — a
// successful run with the same tunables, one with other tunables scaled to these, or
// only the capacity the failed run ran out of — and how far the tunables moved.
func gpuFeatureVec(c *Context, res failure.Resources, tu Tunables, capacity float64, x []float64) []float64 {
	x = append(x[:0], 1)
	if res.GPU == 0 {
		return append(x, 0, 0, 0, 0, 0, 1)
	}
	usable := capacity * usableGPU
	// Without a sharding model, a different GPU count keeps the per-GPU need.
	floor := c.GPUFloor * gpuScale(c.Tun, tu)
	direct, scaled := 0.0, 0.0
	for _, r := range c.GPURuns {
		if r.Tun == tu {
			direct = math.Max(direct, r.Peak)
		} else {
			scaled = math.Max(scaled, r.Peak*gpuScale(r.Tun, tu))
		}
	}
	z := func(need float64) float64 { return clamp(math.Log(usable/need), -1, 1.5) }
	// The floor is the capacity the run filled, not what it could use of it.
	floor *= usableGPU
	move := math.Abs(math.Log(gpuScale(c.Tun, tu)))
	if move == 0 && floor > 0 {
		// The tunables that just failed: the need is above the floor, whatever an
		// older run saw, and no more capacity than the floor is a certain failure.
		if usable <= floor {
			return append(x, 0, 0, -1, 0, 0, 0)
		}
		return append(x, 0, 0, z(math.Max(floor, direct)), 0, 0, 0)
	}
	switch {
	case direct > 0 && direct >= 0.9*floor:
		// A run with exactly these tunables succeeded: its peak is the need.
		return append(x, z(math.Max(direct, floor)), 0, 0, 0, 0, 0)
	case scaled > 0 && scaled >= 0.9*floor:
		return append(x, 0, z(math.Max(scaled, floor)), 0, 0, move, 0)
	case floor > 0:
		return append(x, 0, 0, 0, z(floor), move, 0)
	case direct > 0:
		return append(x, z(direct), 0, 0, 0, 0, 0)
	}
	return append(x, 0, 0, 0, 0, 0, 1) // no sign the GPU memory is short
}

// deadlineFeatures describe a candidate deadline against the expected runtime.
func deadlineFeatureVec(c *Context, deadline, runtime float64, x []float64) []float64 {
	x = append(x[:0], 1)
	if deadline <= 0 || runtime <= 0 {
		return append(x, 0, 1)
	}
	return append(x, clamp(math.Log(deadline/runtime), -3, 3)*5, 0)
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
