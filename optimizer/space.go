package optimizer

import (
	"math"
	"slices"
	"strconv"

	"github.com/autofix/autofix/failure"
)

// Space is what a retry may change, around the configuration that failed.
type Space struct {
	// Failed is the configuration that failed; Declared the tunables the job declares.
	Failed   failure.Option
	Declared map[string]failure.Tunable
	// Node is where the failed run ran, avoided when Avoid is set.
	Node  string
	Avoid bool
	// Memory varies the memory limit from MemoryFloor up to MemoryCap in steps of
	// MemoryStep (a factor, e.g. 1.05).
	Memory                 bool
	MemoryFloor, MemoryCap int64
	MemoryStep             float64
	// Disk varies the ephemeral-storage limit from DiskFloor up to DiskCap in steps
	// of DiskStep, as Memory does the memory limit.
	Disk               bool
	DiskFloor, DiskCap int64
	DiskStep           float64
	// GPU varies the GPU model and count and the declared tunables.
	GPU      bool
	GPUTypes []string
	MaxGPUs  int
	// Deadline varies the deadline over these multiples of Deadline.
	Deadline          float64
	DeadlineMultiples []float64
	// Delay is the backoff before the retry, in seconds.
	Delay float64
}

// Candidates enumerates the configurations of the space. Options with the same GPU
// setup share one Params map, which callers must not modify.
func (s *Space) Candidates() []failure.Option { return s.AppendCandidates(nil) }

// AppendCandidates appends the configurations of the space to dst, as Candidates
// lists them, and returns the extended slice.
func (s *Space) AppendCandidates(dst []failure.Option) []failure.Option {
	return s.grid().appendAll(dst)
}

// appendAll appends every point of the grid to dst, the last dimension varying
// fastest.
func (g *grid) appendAll(dst []failure.Option) []failure.Option {
	out := slices.Grow(dst, g.size())
	var at [numDims]int
	for {
		out = append(out, g.option(at))
		if !g.next(&at) {
			return out
		}
	}
}

// next moves at to the grid's next point, like an odometer; false after the last.
func (g *grid) next(at *[numDims]int) bool {
	for i := range at {
		d := len(at) - 1 - i
		at[d]++
		if at[d] < g.dims[d] {
			return true
		}
		at[d] = 0
	}
	return false
}

// The dimensions of a space, outermost first: candidates that differ only in the
// inner ones (memory, deadline) share a GPU setup, which the models predict once.
const (
	dimMicroBatch = iota // micro-batch with its gradient accumulation
	dimPrecision
	dimCheckpointing
	dimGPUType
	dimGPUCount
	dimMemory
	dimDisk
	dimDeadline
	numDims
)

// grid is a space as a product of dimensions; a point is an index into each.
type grid struct {
	base                    failure.Option
	names                   map[failure.TunableRole]string
	mbs, accs, precs, ckpts []string
	types                   []string
	counts                  []int
	mems, disks             []int64
	deadlines               []float64
	dims                    [numDims]int
	params                  []map[string]string // by tunable setting, made on first use
	varyParams              bool
}

func (s *Space) grid() *grid {
	g := &grid{base: failure.Option{
		Resources: s.Failed.Resources, Params: s.Failed.Params, DeadlineSeconds: s.Failed.DeadlineSeconds,
		DelaySeconds: s.Delay,
	}}
	if s.Avoid && s.Node != "" {
		g.base.AvoidNodes = []string{s.Node}
	}
	res := g.base.Resources
	g.mbs, g.accs, g.precs, g.ckpts = []string{""}, []string{""}, []string{""}, []string{""}
	g.types, g.counts = []string{res.GPUType}, []int{res.GPU}
	if s.GPU && res.GPU > 0 {
		s.gpuDims(g)
	}
	g.mems = []int64{res.MemoryBytes}
	if s.Memory {
		g.mems = s.memorySteps()
	}
	g.disks = []int64{res.EphemeralStorageBytes}
	if s.Disk {
		g.disks = steps(s.DiskFloor, s.DiskCap, s.DiskStep, res.EphemeralStorageBytes, 1<<30)
	}
	g.deadlines = []float64{g.base.DeadlineSeconds}
	if s.Deadline > 0 && len(s.DeadlineMultiples) > 0 {
		g.deadlines = g.deadlines[:0]
		for _, m := range s.DeadlineMultiples {
			g.deadlines = append(g.deadlines, math.Ceil(s.Deadline*m/60)*60)
		}
	}
	g.dims = [numDims]int{len(g.mbs), len(g.precs), len(g.ckpts), len(g.types), len(g.counts), len(g.mems), len(g.disks), len(g.deadlines)}
	g.params = make([]map[string]string, len(g.mbs)*len(g.precs)*len(g.ckpts))
	return g
}

// size is the number of points of the grid.
func (g *grid) size() int {
	n := 1
	for _, d := range g.dims {
		n *= d
	}
	return n
}

// option is the configuration at point at.
func (g *grid) option(at [numDims]int) failure.Option {
	o := g.base
	if g.varyParams {
		k := (at[dimMicroBatch]*len(g.precs)+at[dimPrecision])*len(g.ckpts) + at[dimCheckpointing]
		if g.params[k] == nil {
			g.params[k] = withParams(g.base.Params, g.names, g.mbs[at[dimMicroBatch]], g.accs[at[dimMicroBatch]],
				g.precs[at[dimPrecision]], g.ckpts[at[dimCheckpointing]])
		}
		o.Params = g.params[k]
	}
	o.Resources.GPUType, o.Resources.GPU = g.types[at[dimGPUType]], g.counts[at[dimGPUCount]]
	o.Resources.MemoryBytes = g.mems[at[dimMemory]]
	o.Resources.EphemeralStorageBytes = g.disks[at[dimDisk]]
	o.DeadlineSeconds = g.deadlines[at[dimDeadline]]
	return o
}

// memorySteps are geometric steps from the floor to the cap, rounded up to 256 MiB.
func (s *Space) memorySteps() []int64 {
	return steps(s.MemoryFloor, s.MemoryCap, s.MemoryStep, s.Failed.Resources.MemoryBytes, 256<<20)
}

// steps are geometric steps by a factor step (default 1.05) from floor (failed when
// not set) to cap, rounded up to a multiple of unit.
func steps(floor, cap int64, step float64, failed, unit int64) []int64 {
	if floor <= 0 {
		floor = failed
	}
	if step <= 1 {
		step = 1.05
	}
	var out []int64
	for m := float64(floor); m <= float64(cap); m *= step {
		v := int64(math.Ceil(m/float64(unit))) * unit
		if len(out) == 0 || v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		out = append(out, floor)
	}
	return out
}

// gpuDims varies the GPU model and count and the declared tunables: the micro-batch
// halved (down to an eighth) with the gradient accumulation doubled, so the global
// batch stays the same; a lower precision; activation checkpointing.
func (s *Space) gpuDims(g *grid) {
	names := roles(s.Declared)
	p := g.base.Params
	g.names, g.varyParams = names, true
	g.mbs, g.accs = []string{p[names[failure.RoleMicroBatch]]}, []string{p[names[failure.RoleGradAccum]]}
	if mb, err := strconv.Atoi(p[names[failure.RoleMicroBatch]]); err == nil && names[failure.RoleGradAccum] != "" {
		acc, err := strconv.Atoi(p[names[failure.RoleGradAccum]])
		if err == nil {
			t := s.Declared[names[failure.RoleMicroBatch]]
			for f := 2; f <= 8 && mb/f >= max(1, int(t.Min)) && mb%f == 0; f *= 2 {
				if ta := s.Declared[names[failure.RoleGradAccum]]; ta.Max > 0 && float64(acc*f) > ta.Max {
					break
				}
				g.mbs, g.accs = append(g.mbs, strconv.Itoa(mb/f)), append(g.accs, strconv.Itoa(acc*f))
			}
		}
	}
	g.precs = []string{p[names[failure.RolePrecision]]}
	if n := names[failure.RolePrecision]; n != "" && p[n] == "fp32" && slices.Contains(s.Declared[n].Values, "bf16") {
		g.precs = append(g.precs, "bf16")
	}
	g.ckpts = []string{p[names[failure.RoleCheckpointing]]}
	if n := names[failure.RoleCheckpointing]; n != "" && p[n] != "true" {
		g.ckpts = append(g.ckpts, "true")
	}
	if len(s.GPUTypes) > 0 {
		g.types = s.GPUTypes
	}
	g.counts = g.counts[:0]
	limit := max(s.MaxGPUs, g.base.Resources.GPU)
	for n := g.base.Resources.GPU; ; n *= 2 {
		g.counts = append(g.counts, n)
		if n > limit/2 { // the next doubling would pass the limit (or overflow)
			break
		}
	}
}

// roles maps each tunable role to the parameter that plays it.
func roles(declared map[string]failure.Tunable) map[failure.TunableRole]string {
	out := map[failure.TunableRole]string{}
	for name, t := range declared {
		out[t.Role] = name
	}
	return out
}

func withParams(p map[string]string, names map[failure.TunableRole]string, mb, acc, prec, ck string) map[string]string {
	out := make(map[string]string, len(p)+4)
	for k, v := range p {
		out[k] = v
	}
	set := func(role failure.TunableRole, v string) {
		if n := names[role]; n != "" && v != "" {
			out[n] = v
		}
	}
	set(failure.RoleMicroBatch, mb)
	set(failure.RoleGradAccum, acc)
	set(failure.RolePrecision, prec)
	set(failure.RoleCheckpointing, ck)
	return out
}
