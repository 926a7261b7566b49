package sim

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/autofix/autofix/failure"
)

// result is what happened to one attempt, in ground-truth terms.
type result struct {
	ok bool
	// cause is the true reason of a failure.
	cause    failure.Category
	gpuOOM   bool // for cause oom_gpu (kept apart from host-memory OOM)
	seconds  float64
	node     string
	peakMem  float64 // observed peak host memory, bytes
	peakGPU  float64 // observed peak per-GPU memory, bytes
	peakDisk float64 // observed peak local storage, bytes
	cost     float64
	limitHit bool // usage reached the memory limit (OOM)
}

// attempt runs attempt a (0 is the first run) of run ru with configuration opt.
func (s *Scenario) attempt(ru *run, a int, opt failure.Option) result {
	t := ru.t
	r := rng(s.Seed, 3, uint64(t.index), uint64(ru.index), uint64(a))
	res := opt.Resources
	tu := t.tunablesOf(opt.Params)
	out := result{node: s.nodeFor(ru, a, r, opt.AvoidNodes)}

	if float64(res.MemoryBytes) > s.Cluster.MaxMemoryGiB*gib || float64(res.CPUMillis) > s.Cluster.MaxCPU*1000 || res.GPU > s.Cluster.MaxGPUs ||
		s.Disk != (LogNormal{}) && float64(res.EphemeralStorageBytes) > s.Cluster.MaxEphemeralGiB*gib {
		out.cause, out.node = failure.SchedulingCapacity, ""
		return out
	}
	runtime := ru.runtime(res, tu)
	memNeed, gpuNeed := ru.memNeed(), ru.gpuNeed(res, tu)
	memPeakAt := uniform(r, 0.2, 1) // when the host memory peak comes, as a share of the runtime

	// Every way the attempt can fail, with the time it would fail at; the earliest wins.
	end, cause := runtime, failure.Category("")
	fail := func(c failure.Category, at float64) {
		if at < end {
			end, cause = at, c
		}
	}
	switch ru.defect {
	case failure.ConfigError:
		fail(failure.ConfigError, runtime*0.002)
	case failure.UserCode:
		fail(failure.UserCode, runtime*uniform(r, 0.005, 0.3))
	case failure.DataError:
		fail(failure.DataError, runtime*uniform(r, 0.01, 0.5))
	}
	if float64(res.MemoryBytes) < memNeed {
		// Usage climbs towards the need and is killed when it meets the limit.
		fail(failure.OOMMemory, runtime*memPeakAt*float64(res.MemoryBytes)/memNeed)
	}
	// Local storage fills steadily; the kubelet evicts the pod when it passes the limit.
	diskNeed, diskLimit := ru.diskNeed(), float64(res.EphemeralStorageBytes)
	if diskLimit > 0 && diskNeed > diskLimit {
		fail(failure.DiskFull, runtime*diskLimit/diskNeed)
	}
	if gpuNeed > float64(s.Catalogue.GPUMemory(res.GPUType))*usableGPUFraction {
		fail(failure.OOMGPU, runtime*uniform(r, 0.002, 0.05))
	}
	f := t.rates(s)
	if r.Float64() < f.Transient {
		fail(failure.NetworkTransient, runtime*r.Float64())
	}
	// Hazards per hour strike at an exponentially distributed time.
	hours := runtime / 3600
	nodes := math.Max(1, math.Ceil(float64(res.GPU)/8))
	preempt := f.PreemptedPerHour * nodes
	if t.spot {
		preempt += s.Failures.SpotPreemptedPerHour * nodes
	}
	if at, ok := hazard(r, preempt, hours); ok {
		fail(failure.Preempted, at*3600)
	}
	if out.node == ru.badNode {
		fail(failure.Hardware, runtime*uniform(r, 0, 0.3))
	} else if at, ok := hazard(r, f.HardwarePerGPUHour*float64(res.GPU)+f.HardwarePerNodeHour*nodes, hours); ok {
		fail(failure.Hardware, at*3600)
	}
	if opt.DeadlineSeconds > 0 {
		fail(failure.Timeout, opt.DeadlineSeconds)
	}

	out.ok, out.cause, out.seconds = cause == "", cause, end
	out.gpuOOM = cause == failure.OOMGPU
	out.cost = s.Catalogue.Cost(res, end)
	out.peakMem = math.Min(memNeed*math.Min(1, end/(runtime*memPeakAt)), float64(res.MemoryBytes))
	if cause == failure.OOMMemory {
		out.peakMem, out.limitHit = float64(res.MemoryBytes), true
	}
	out.peakDisk = diskNeed * math.Min(1, end/runtime)
	if diskLimit > 0 {
		out.peakDisk = math.Min(out.peakDisk, diskLimit)
	}
	if cause == failure.DiskFull {
		out.peakDisk = diskLimit
	}
	if res.GPU > 0 {
		out.peakGPU = math.Min(gpuNeed, float64(s.Catalogue.GPUMemory(res.GPUType))*usableGPUFraction)
	}
	if cause == failure.Hardware && !slices.Contains(opt.AvoidNodes, out.node) {
		ru.badNode = out.node
	}
	return out
}

// hazard draws when an event with the given rate per hour strikes, and whether it
// strikes within hours.
func hazard(r *rand.Rand, perHour, hours float64) (float64, bool) {
	if perHour <= 0 {
		return 0, false
	}
	at := r.ExpFloat64() / perHour
	return at, at < hours
}
