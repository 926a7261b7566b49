package models

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/autofix/autofix/failure"
)

// Context is what is known about a failed run when its retry is planned: the failed
// configuration and estimates drawn from the failure and from the history of the
// job's template. Memory is in bytes, time in seconds.
type Context struct {
	Category failure.Category
	// Failed is the configuration that failed, Tun its tunables and Declared the
	// tunables the job declares.
	Failed   failure.Resources
	Tun      Tunables
	Declared map[string]failure.Tunable
	// MemFloor is the largest memory limit the run has been OOM-killed at (its need is
	// above it); 0 if it has not been.
	MemFloor float64
	// MemEstimate is the need predicted from the peaks of the template's recent
	// successful runs, grown by their trend; 0 without such peaks. MemSpread is the
	// spread (sigma of log) of those runs' peaks around the trend.
	MemEstimate, MemSpread float64
	// MemBounds is, when no run's peak was measured, what the memory limits the
	// template's runs succeeded and ran out at say of the need; nil when there is
	// a peak estimate or no run succeeded.
	MemBounds *Bounds
	// Disk is what is known of the local-storage need, as the Mem fields are of the
	// memory need: the largest ephemeral-storage limit the run was evicted at, the
	// estimate and spread from its successful runs' peaks, or the bounds from their
	// limits.
	Disk Need
	// GPUFloor is the per-GPU memory at which the run ran out of GPU memory, at the
	// failed tunables; 0 if it has not.
	GPUFloor float64
	// GPUEstimate is the per-GPU need at the failed configuration predicted from the
	// peaks of successful runs with the same setup; 0 without such runs.
	GPUEstimate float64
	// GPURuns are recent successful runs with the failed run's GPU count: the per-GPU
	// memory they peaked at with their tunables.
	GPURuns []GPURun
	// GPUBounds is, when no such run's peak was measured, what the GPU setups the
	// template's runs with the failed run's GPU count succeeded and ran out of GPU
	// memory with say of the per-GPU need at the failed tunables; nil otherwise.
	GPUBounds *Bounds
	// Runtime is the expected runtime at the failed configuration and RuntimeKnown
	// whether successful runs with that configuration back it; otherwise it is a
	// guess from the failure, improved by the models from RuntimeRuns. Deadline is
	// the failed run's activeDeadlineSeconds (0 if unknown).
	Runtime, Deadline float64
	RuntimeKnown      bool
	// RuntimeRuns are recent successful runs with other configurations.
	RuntimeRuns []RuntimeRun
	// History counts the successful runs the estimates come from.
	History int

	id uint64 // unique per NewContext, for caches keyed by context
}

var contexts atomic.Uint64

// Need is what is known of a run's need for a resource: Floor, the largest limit it
// failed for lack of (0: none); Estimate, the need the peaks of its template's recent
// successful runs predict (0: no peaks); Spread, their spread around the trend (sigma
// of log); Bounds, without peaks, what the limits of those runs say (nil: nothing).
type Need struct {
	Floor, Estimate, Spread float64
	Bounds                  *Bounds
}

// Memory is what is known of the memory need, as a Need.
func (c *Context) Memory() Need {
	return Need{Floor: c.MemFloor, Estimate: c.MemEstimate, Spread: c.MemSpread, Bounds: c.MemBounds}
}

// AtRisk reports whether the need may exceed limit: the peak estimate comes above
// 90% of it or, without peaks, the bounds give it less than a 90% chance of being
// enough.
func (n Need) AtRisk(limit float64) bool {
	if n.Estimate > 0 {
		return n.Estimate > 0.9*limit
	}
	return n.Bounds != nil && n.Bounds.P(limit) < 0.9
}

// Level is the need to size candidate limits by: the peak estimate or, without
// peaks, the size the bounds give a 95% chance of being enough; 0 when neither is
// known.
func (n Need) Level() float64 {
	switch {
	case n.Estimate > 0:
		return n.Estimate
	case n.Bounds != nil:
		return n.Bounds.Quantile(0.95)
	}
	return 0
}

// RuntimeRun is a successful run's configuration and runtime.
type RuntimeRun struct {
	Resources failure.Resources
	Tun       Tunables
	Seconds   float64
}

// GPURun is a successful run's per-GPU memory peak and the tunables it ran with.
type GPURun struct {
	Tun  Tunables
	Peak float64
}

// Tunables are the parameters that change a GPU job's memory and runtime.
type Tunables struct {
	MicroBatch, GradAccum int
	Precision             string
	Checkpointing         bool
}

// TunablesOf reads tunables from a job's parameters by the roles it declares; a
// parameter that is not declared or not set keeps the zero value.
func TunablesOf(params map[string]string, declared map[string]failure.Tunable) Tunables {
	return overlay(Tunables{}, params, declared)
}

// TunablesOf reads a candidate's tunables, keeping the failed run's values for the
// parameters it leaves out.
func (c *Context) TunablesOf(params map[string]string) Tunables {
	return overlay(c.Tun, params, c.Declared)
}

// overlay sets in tu the declared tunables that params hold (a malformed number
// reads as 0).
func overlay(tu Tunables, params map[string]string, declared map[string]failure.Tunable) Tunables {
	for name, t := range declared {
		v, ok := params[name]
		if !ok {
			continue
		}
		switch t.Role {
		case failure.RoleMicroBatch:
			tu.MicroBatch, _ = strconv.Atoi(v)
		case failure.RoleGradAccum:
			tu.GradAccum, _ = strconv.Atoi(v)
		case failure.RolePrecision:
			tu.Precision = v
		case failure.RoleCheckpointing:
			tu.Checkpointing, _ = strconv.ParseBool(v)
		}
	}
	return tu
}

// storageEvictionWords are what the kubelet's eviction messages say of local
// storage: a pod over its limit ("Pod ephemeral local storage usage exceeds the
// total limit of containers 20Gi."), a container over its own ("Container trainer
// exceeded its local ephemeral storage limit \"10Gi\"."), or a node short of it
// ("The node was low on resource: ephemeral-storage."). An emptyDir over its
// sizeLimit is not among them: a retry does not change the volume's size, so a
// floor on the container's storage would buy nothing.
var storageEvictionWords = []string{"ephemeral local storage usage exceeds", "local ephemeral storage limit",
	"low on resource: ephemeral-storage"}

// storageEviction reports whether sig is the kubelet's eviction of a pod for local
// storage: reason Evicted, or DisruptionTarget (the watcher's reason when the pod
// carries the kubelet's disruption condition, as from Kubernetes 1.26), with a
// message that names storage. An eviction for memory, CPU or PID pressure, another
// component's, or one without the kubelet's message says nothing of storage.
func storageEviction(sig *failure.Signals) bool {
	if sig.Reason != "Evicted" && sig.Reason != "DisruptionTarget" {
		return false
	}
	m := strings.ToLower(sig.Message)
	return slices.ContainsFunc(storageEvictionWords, func(w string) bool { return strings.Contains(m, w) })
}

// historyWindow is how many recent successful runs the estimates use.
const historyWindow = 12

// NewContext gathers what the event and the template's history say about a failure
// of category cat. history is oldest first.
func NewContext(ev *failure.Event, cat failure.Category, history []failure.Outcome, cat2 failure.Catalogue) Context {
	job, sig := &ev.Job, &ev.Failure
	c := Context{Category: cat, Failed: job.Resources, Tun: TunablesOf(job.Params, job.Tunables), Declared: job.Tunables,
		id: contexts.Add(1)}
	// A floor comes from the category, a measured peak at the limit or, when nothing
	// was measured (a cluster without metrics), what Kubernetes said, whatever the
	// classifier made of the text: an OOMKilled container was killed at its memory
	// limit, and a pod the kubelet evicted with a message naming local storage was
	// evicted for it.
	if peak := float64(sig.Usage.PeakMemoryBytes); cat == failure.OOMMemory ||
		sig.ExitCode == 137 && peak >= 0.98*float64(job.Resources.MemoryBytes) ||
		peak == 0 && sig.Reason == "OOMKilled" {
		c.MemFloor = float64(job.Resources.MemoryBytes)
	}
	if lim, peak := float64(job.Resources.EphemeralStorageBytes), float64(sig.Usage.PeakEphemeralStorageBytes); lim > 0 &&
		(cat == failure.DiskFull || peak >= 0.98*lim || peak == 0 && storageEviction(sig)) {
		c.Disk.Floor = lim
	}
	if cat == failure.OOMGPU && job.Resources.GPU > 0 {
		c.GPUFloor = float64(cat2.GPUMemory(job.Resources.GPUType))
	}
	if cat == failure.Timeout || sig.Reason == "DeadlineExceeded" {
		c.Deadline = sig.DurationSeconds
	}
	// The earlier attempts of this run, newest first, tell how high the floors are:
	// an attempt whose usage reached its memory limit or filled its GPUs ran out.
	for i := len(history) - 1; i >= 0; i-- {
		h := history[i]
		if h.Succeeded {
			break
		}
		if h.Category == failure.OOMMemory || h.Usage.PeakMemoryBytes > 0 && float64(h.Usage.PeakMemoryBytes) >= 0.98*float64(h.Resources.MemoryBytes) {
			c.MemFloor = math.Max(c.MemFloor, float64(h.Resources.MemoryBytes))
		}
		if lim := float64(h.Resources.EphemeralStorageBytes); lim > 0 && float64(h.Usage.PeakEphemeralStorageBytes) >= 0.98*lim {
			c.Disk.Floor = math.Max(c.Disk.Floor, lim)
		}
		if capacity := float64(cat2.GPUMemory(h.Resources.GPUType)); h.Resources.GPU > 0 && capacity > 0 &&
			(h.Category == failure.OOMGPU || float64(h.Usage.PeakGPUMemoryBytes) >= 0.9*capacity) {
			c.GPUFloor = math.Max(c.GPUFloor, capacity*gpuScale(TunablesOf(h.Params, job.Tunables), c.Tun))
		}
	}

	var peaks, idx, gpuPeaks, gpuIdx, durations, diskPeaks, diskIdx []float64
	n := 0
	for i := len(history) - 1; i >= 0 && n < historyWindow; i-- {
		h := history[i]
		if !h.Succeeded {
			continue
		}
		n++
		// A run whose peak the cluster could not tell (no metrics) says nothing of
		// the need: a zero would read as a need of nothing.
		if h.Usage.PeakMemoryBytes > 0 {
			idx = append(idx, float64(i))
			peaks = append(peaks, float64(h.Usage.PeakMemoryBytes))
		}
		if h.Usage.PeakEphemeralStorageBytes > 0 {
			diskIdx, diskPeaks = append(diskIdx, float64(i)), append(diskPeaks, float64(h.Usage.PeakEphemeralStorageBytes))
		}
		// GPU peaks and runtimes compare only between runs of the same setup.
		same := sameShape(h.Resources, job.Resources) && TunablesOf(h.Params, job.Tunables) == c.Tun
		if same && h.Usage.PeakGPUMemoryBytes > 0 {
			gpuIdx = append(gpuIdx, float64(i))
			gpuPeaks = append(gpuPeaks, float64(h.Usage.PeakGPUMemoryBytes))
		}
		if h.Resources.GPU == job.Resources.GPU && h.Usage.PeakGPUMemoryBytes > 0 {
			c.GPURuns = append(c.GPURuns, GPURun{Tun: c.TunablesOf(h.Params), Peak: float64(h.Usage.PeakGPUMemoryBytes)})
		}
		if same {
			durations = append(durations, h.DurationSeconds)
		} else {
			c.RuntimeRuns = append(c.RuntimeRuns, RuntimeRun{Resources: h.Resources, Tun: c.TunablesOf(h.Params), Seconds: h.DurationSeconds})
		}
	}
	c.History = n
	now := float64(len(history))
	if len(peaks) > 0 {
		c.MemEstimate, c.MemSpread = trendEstimate(idx, peaks, now)
	}
	if len(diskPeaks) > 0 {
		c.Disk.Estimate, c.Disk.Spread = trendEstimate(diskIdx, diskPeaks, now)
	}
	if len(gpuPeaks) > 0 {
		c.GPUEstimate, _ = trendEstimate(gpuIdx, gpuPeaks, now)
	}
	if len(durations) > 0 {
		c.Runtime, c.RuntimeKnown = median(durations), true
	}
	// Without peaks, the limits the runs were given, and whether each was enough.
	// The GPU setups' bounds serve a failure of GPU memory only: the retry of any
	// other keeps the setup (the recommender varies memory and local storage at
	// risk, not GPUs), and bounds that foresee a GPU shortage there would only
	// make every candidate look as bad.
	gpuBounded := cat == failure.OOMGPU && job.Resources.GPU > 0 && len(c.GPURuns) == 0
	diskBounded := c.Disk.Estimate == 0 && job.Resources.EphemeralStorageBytes > 0
	if c.MemEstimate == 0 || diskBounded || gpuBounded {
		runs, current := runsOf(history, job.Attempt)
		if c.MemEstimate == 0 {
			c.MemBounds = memoryBounds(runs, current, c.MemFloor)
		}
		if diskBounded {
			c.Disk.Bounds = diskBounds(runs, current, c.Disk.Floor)
		}
		if gpuBounded {
			c.GPUBounds = gpuBounds(runs, current, job.Resources, c.Tun, job.Tunables, cat2)
		}
	}
	if c.Runtime == 0 {
		// Without history: the failed run got this far. A run stopped at its deadline
		// needed somewhat more; others fail, on average, midway.
		if c.Deadline > 0 {
			c.Runtime = 1.5 * c.Deadline
		} else {
			c.Runtime = math.Max(2*sig.DurationSeconds, 60)
		}
	}
	return c
}

// sameShape reports whether two configurations run at the same speed.
func sameShape(a, b failure.Resources) bool {
	return a.GPU == b.GPU && a.GPUType == b.GPUType && (a.GPU > 0 || a.CPUMillis == b.CPUMillis)
}

// trendEstimate fits log(value) against position (least squares, slope bounded to
// growth the models can believe) and returns the value the trend predicts at now, and
// the spread of the values around it. Positions and values are newest first.
func trendEstimate(pos, vals []float64, now float64) (estimate, spread float64) {
	n := float64(len(vals))
	var sx, sy, sxx, sxy float64
	for i := range vals {
		x, y := pos[i], math.Log(math.Max(vals[i], 1))
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	slope := 0.0
	if d := n*sxx - sx*sx; len(vals) >= 3 && d > 0 {
		slope = (n*sxy - sx*sy) / d
	}
	slope = math.Max(0, math.Min(slope, 0.05))
	mx, my := sx/n, sy/n
	var ss float64
	for i := range vals {
		r := math.Log(math.Max(vals[i], 1)) - (my + slope*(pos[i]-mx))
		ss += r * r
	}
	if len(vals) > 1 {
		spread = math.Sqrt(ss / (n - 1))
	}
	estimate = math.Exp(my + slope*(now-mx))
	// A single peak can sit anywhere: give it the spread of a typical job.
	spread = math.Max(spread, 0.02)
	if len(vals) < 3 {
		spread = math.Max(spread, 0.08)
	}
	return estimate, spread
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
