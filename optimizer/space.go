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
	base := failure.Option{
		Resources: s.Failed.Resources, Params: s.Failed.Params, DeadlineSeconds: s.Failed.DeadlineSeconds,
		DelaySeconds: s.Delay,
	}
	if s.Avoid && s.Node != "" {
		base.AvoidNodes = []string{s.Node}
	}
	setups := []failure.Option{base}
	if s.GPU && base.Resources.GPU > 0 {
		setups = s.gpuSetups(base)
	}
	mems := []int64{base.Resources.MemoryBytes}
	if s.Memory {
		mems = s.memorySteps()
	}
	deadlines := []float64{base.DeadlineSeconds}
	if s.Deadline > 0 && len(s.DeadlineMultiples) > 0 {
		deadlines = deadlines[:0]
		for _, m := range s.DeadlineMultiples {
			deadlines = append(deadlines, math.Ceil(s.Deadline*m/60)*60)
		}
	}
	out := slices.Grow(dst, len(setups)*len(mems)*len(deadlines))
	for _, setup := range setups {
		for _, mem := range mems {
			for _, d := range deadlines {
				o := setup
				o.Resources.MemoryBytes = mem
				o.DeadlineSeconds = d
				out = append(out, o)
			}
		}
	}
	return out
}

// memorySteps are geometric steps from the floor to the cap, rounded up to 256 MiB.
func (s *Space) memorySteps() []int64 {
	floor, cap := s.MemoryFloor, s.MemoryCap
	if floor <= 0 {
		floor = s.Failed.Resources.MemoryBytes
	}
	step := s.MemoryStep
	if step <= 1 {
		step = 1.05
	}
	var out []int64
	for m := float64(floor); m <= float64(cap); m *= step {
		v := int64(math.Ceil(m/(256<<20))) * (256 << 20)
		if len(out) == 0 || v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		out = append(out, floor)
	}
	return out
}

// gpuSetups varies the GPU model and count and the declared tunables: the micro-batch
// halved (down to an eighth) with the gradient accumulation doubled, so the global
// batch stays the same; a lower precision; activation checkpointing.
func (s *Space) gpuSetups(base failure.Option) []failure.Option {
	names := roles(s.Declared)
	p := base.Params
	mbs, accs := []string{p[names[failure.RoleMicroBatch]]}, []string{p[names[failure.RoleGradAccum]]}
	if mb, err := strconv.Atoi(p[names[failure.RoleMicroBatch]]); err == nil && names[failure.RoleGradAccum] != "" {
		acc, err := strconv.Atoi(p[names[failure.RoleGradAccum]])
		if err == nil {
			t := s.Declared[names[failure.RoleMicroBatch]]
			for f := 2; f <= 8 && mb/f >= max(1, int(t.Min)) && mb%f == 0; f *= 2 {
				if ta := s.Declared[names[failure.RoleGradAccum]]; ta.Max > 0 && float64(acc*f) > ta.Max {
					break
				}
				mbs, accs = append(mbs, strconv.Itoa(mb/f)), append(accs, strconv.Itoa(acc*f))
			}
		}
	}
	precs := []string{p[names[failure.RolePrecision]]}
	if n := names[failure.RolePrecision]; n != "" && p[n] == "fp32" && slices.Contains(s.Declared[n].Values, "bf16") {
		precs = append(precs, "bf16")
	}
	ckpts := []string{p[names[failure.RoleCheckpointing]]}
	if n := names[failure.RoleCheckpointing]; n != "" && p[n] != "true" {
		ckpts = append(ckpts, "true")
	}
	types := s.GPUTypes
	if len(types) == 0 {
		types = []string{base.Resources.GPUType}
	}
	maxGPUs := max(s.MaxGPUs, base.Resources.GPU)
	counts := 0
	for n := base.Resources.GPU; n <= maxGPUs; n *= 2 {
		counts++
	}
	out := make([]failure.Option, 0, len(mbs)*len(precs)*len(ckpts)*len(types)*counts)
	for i := range mbs {
		for _, prec := range precs {
			for _, ck := range ckpts {
				params := withParams(p, names, mbs[i], accs[i], prec, ck)
				for _, typ := range types {
					for n := base.Resources.GPU; n <= maxGPUs; n *= 2 {
						o := base
						o.Resources.GPUType, o.Resources.GPU = typ, n
						o.Params = params
						out = append(out, o)
					}
				}
			}
		}
	}
	return out
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
