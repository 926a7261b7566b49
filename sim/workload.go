package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/autofix/autofix/failure"
)

const gib = 1 << 30

// usableGPUFraction is the share of a GPU's memory a job can allocate (the driver and
// the runtime keep the rest).
const usableGPUFraction = 0.96

// template is a recurring job and its ground truth. Nothing here leaves the package.
type template struct {
	index int
	name  string
	kind  failure.JobKind
	// config is what the job's owners ask for on every run.
	config failure.Option
	// tunables the job declares, and their configured values.
	tunables map[string]failure.Tunable
	tun      tunables
	// fsdp: the static part of the GPU memory is sharded over the GPUs.
	fsdp bool
	// memNeed is the true host-memory need of run 0, GiB, and diskNeed its local
	// storage need (0: none modelled).
	memNeed, diskNeed float64
	// gpuStatic and gpuAct are the per-GPU need of run 0 at the configured tunables
	// and GPU count, GiB: weights and optimizer state, and activations.
	gpuStatic, gpuAct float64
	// runtime is hours at the configured resources for run 0.
	runtime float64
	// growth is the per-run log-growth of the needs and the runtime.
	growth float64
	// style picks among the framework's wordings of its log lines.
	style int
	// spot: the template runs on preemptible capacity.
	spot bool
}

// rates are the failure rates of the template's class.
func (t *template) rates(s *Scenario) FailureRates {
	if t.config.Resources.GPU > 0 {
		return s.Failures.GPU
	}
	return s.Failures.CPU
}

// tunables are the parameters that change a GPU job's memory and runtime.
type tunables struct {
	microBatch, gradAccum int
	precision             string
	checkpointing         bool
}

func (s *Scenario) templates() []*template {
	var ts []*template
	kinds := make([]Weighted[failure.JobKind], 0, len(s.Kinds))
	for _, k := range []failure.JobKind{failure.Training, failure.Compression, failure.Deployment, failure.Batch} {
		if w := s.Kinds[k]; w > 0 {
			kinds = append(kinds, Weighted[failure.JobKind]{k, w})
		}
	}
	for i := range s.Templates {
		r := rng(s.Seed, 1, uint64(i))
		t := &template{index: i, kind: pick(r, kinds), style: r.IntN(3)}
		t.name = fmt.Sprintf("%s-%03d", kindPrefix[t.kind], i)
		t.memNeed = s.Memory[t.kind].draw(r)
		memReq := math.Min(math.Ceil(t.memNeed*s.RequestFactor.draw(r)*2)/2, s.Cluster.MaxMemoryGiB)
		cpu := math.Min(math.Max(1, math.Round(s.CPU.draw(r))), s.Cluster.MaxCPU)
		t.config.Resources = failure.Resources{CPUMillis: int64(cpu * 1000), MemoryBytes: int64(memReq * gib)}
		t.runtime = math.Max(s.Runtime.draw(r), 1.0/60)
		if s.MaxRuntimeHours > 0 {
			t.runtime = math.Min(t.runtime, s.MaxRuntimeHours)
		}
		t.growth = s.Drift.Median + s.Drift.Sigma*r.NormFloat64()
		if r.Float64() < s.GPUShare[t.kind] {
			t.makeGPU(s, r)
		}
		t.spot = r.Float64() < s.Failures.SpotShare[t.kind]
		t.makeDisk(s, rng(s.Seed, 5, uint64(i))) // its own stream: the draws above stay as they were
		t.config.DeadlineSeconds = math.Round(t.runtime * 3600 * s.DeadlineMargin.draw(r))
		ts = append(ts, t)
	}
	return ts
}

var kindPrefix = map[failure.JobKind]string{
	failure.Training: "train", failure.Compression: "compress", failure.Deployment: "serve", failure.Batch: "batch",
}

func (t *template) makeGPU(s *Scenario, r *rand.Rand) {
	gpuType := pick(r, s.GPUTypes)
	gpus := pick(r, s.GPUCounts)
	t.config.Resources.GPU, t.config.Resources.GPUType = gpus, gpuType
	t.config.Resources.CPUMillis = min(t.config.Resources.CPUMillis*int64(max(1, gpus/2)), int64(s.Cluster.MaxCPU*1000))
	t.fsdp = gpus > 1 && r.Float64() < 0.5
	t.tun = tunables{microBatch: []int{4, 8, 16, 32, 64}[r.IntN(5)], gradAccum: 1 + r.IntN(4), precision: "bf16"}
	if r.Float64() < 0.15 {
		t.tun.precision = "fp32"
	}
	t.tun.checkpointing = r.Float64() < 0.25
	t.tunables = map[string]failure.Tunable{}
	if r.Float64() < 0.8 {
		t.tunables["micro_batch_size"] = failure.Tunable{Role: failure.RoleMicroBatch, Min: 1, Max: 512}
		t.tunables["grad_accum_steps"] = failure.Tunable{Role: failure.RoleGradAccum, Min: 1, Max: 256}
	}
	if r.Float64() < 0.5 {
		t.tunables["precision"] = failure.Tunable{Role: failure.RolePrecision, Values: []string{"fp32", "bf16"}}
	}
	if r.Float64() < 0.6 {
		t.tunables["activation_checkpointing"] = failure.Tunable{Role: failure.RoleCheckpointing, Values: []string{"false", "true"}}
	}
	t.config.Params = t.tun.params()
	capacity := s.Catalogue.GPUMemory(gpuType) / gib
	total := float64(capacity) * s.GPUMemory.draw(r)
	static := uniform(r, 0.25, 0.6)
	t.gpuStatic, t.gpuAct = total*static, total*(1-static)
}

// makeDisk draws the template's local-storage need and, for the share of templates
// whose owners set one, its ephemeral-storage limit.
func (t *template) makeDisk(s *Scenario, r *rand.Rand) {
	if s.Disk == (LogNormal{}) {
		return
	}
	t.diskNeed = s.Disk.draw(r)
	if r.Float64() < s.DiskLimitShare {
		limit := math.Min(math.Ceil(t.diskNeed*s.DiskRequestFactor.draw(r)), s.Cluster.MaxEphemeralGiB)
		t.config.Resources.EphemeralStorageBytes = int64(limit * gib)
	}
}

func (tu tunables) params() map[string]string {
	return map[string]string{
		"micro_batch_size":         strconv.Itoa(tu.microBatch),
		"grad_accum_steps":         strconv.Itoa(tu.gradAccum),
		"precision":                tu.precision,
		"activation_checkpointing": strconv.FormatBool(tu.checkpointing),
	}
}

// tunablesOf reads the tunables of an attempt's parameters, defaulting to the
// template's own where a parameter is missing or malformed.
func (t *template) tunablesOf(params map[string]string) tunables {
	tu := t.tun
	if v, err := strconv.Atoi(params["micro_batch_size"]); err == nil && v > 0 {
		tu.microBatch = v
	}
	if v, err := strconv.Atoi(params["grad_accum_steps"]); err == nil && v > 0 {
		tu.gradAccum = v
	}
	if v := params["precision"]; v == "fp32" || v == "bf16" || v == "fp16" {
		tu.precision = v
	}
	if v, err := strconv.ParseBool(params["activation_checkpointing"]); err == nil {
		tu.checkpointing = v
	}
	return tu
}

func (ru *run) speed(gpuType string) float64 { return ru.catalogue.Speed(gpuType) }

// run is one run of a template: its realised needs and its defect, if any.
type run struct {
	t     *template
	index int
	// factor scales the template's needs and runtime for this run (drift, noise).
	memFactor, gpuFactor, timeFactor float64
	defect                           failure.Category // user_code, data_error, config_error or ""
	badNode                          string           // a node whose hardware failed in this run
	catalogue                        *failure.Catalogue
}

func (s *Scenario) newRun(t *template, k int) *run {
	r := rng(s.Seed, 2, uint64(t.index), uint64(k))
	drift := math.Exp(t.growth * float64(k))
	ru := &run{
		t: t, index: k, catalogue: &s.Catalogue,
		memFactor:  drift * math.Exp(s.Noise*r.NormFloat64()),
		gpuFactor:  math.Sqrt(drift) * math.Exp(s.Noise/2*r.NormFloat64()),
		timeFactor: math.Sqrt(drift) * math.Exp(0.1*r.NormFloat64()),
	}
	f := t.rates(s)
	switch x := r.Float64(); {
	case x < f.UserCode:
		ru.defect = failure.UserCode
	case x < f.UserCode+f.Data:
		ru.defect = failure.DataError
	case x < f.UserCode+f.Data+f.Config:
		ru.defect = failure.ConfigError
	}
	return ru
}

// memNeed is the run's host-memory need, bytes.
func (ru *run) memNeed() float64 { return ru.t.memNeed * ru.memFactor * gib }

// diskNeed is the run's local-storage need, bytes: it grows with the data, like the
// memory need.
func (ru *run) diskNeed() float64 { return ru.t.diskNeed * ru.memFactor * gib }

// gpuNeed is the run's per-GPU memory need with the given configuration, bytes.
func (ru *run) gpuNeed(res failure.Resources, tu tunables) float64 {
	t := ru.t
	if t.config.Resources.GPU == 0 || res.GPU == 0 {
		return 0
	}
	static := t.gpuStatic * precisionStatic(tu.precision) / precisionStatic(t.tun.precision)
	if t.fsdp {
		static *= float64(t.config.Resources.GPU) / float64(res.GPU)
	}
	act := t.gpuAct * float64(tu.microBatch) / float64(t.tun.microBatch) *
		precisionActivations(tu.precision) / precisionActivations(t.tun.precision) *
		checkpointFactor(tu.checkpointing) / checkpointFactor(t.tun.checkpointing)
	return (static + act) * ru.gpuFactor * gib
}

func precisionStatic(p string) float64 {
	if p == "fp32" {
		return 1.5
	}
	return 1
}

func precisionActivations(p string) float64 {
	if p == "fp32" {
		return 2
	}
	return 1
}

func checkpointFactor(on bool) float64 {
	if on {
		return 0.3
	}
	return 1
}

// runtime is the run's runtime with the given configuration, seconds. GPU models run
// at the relative speeds of the scenario's catalogue.
func (ru *run) runtime(res failure.Resources, tu tunables) float64 {
	t := ru.t
	secs := t.runtime * 3600 * ru.timeFactor
	base := t.config.Resources
	if base.GPU > 0 && res.GPU > 0 {
		secs *= math.Pow(float64(base.GPU)/float64(res.GPU), 0.85) * ru.speed(base.GPUType) / ru.speed(res.GPUType)
		if tu.checkpointing != t.tun.checkpointing {
			if tu.checkpointing {
				secs *= 1.3
			} else {
				secs /= 1.3
			}
		}
		if (tu.precision == "fp32") != (t.tun.precision == "fp32") {
			if tu.precision == "fp32" {
				secs *= 1.9
			} else {
				secs /= 1.9
			}
		}
		secs *= math.Pow(float64(t.tun.microBatch)/float64(tu.microBatch), 0.12)
	} else if res.CPUMillis > 0 && base.CPUMillis > 0 {
		secs *= math.Pow(float64(base.CPUMillis)/float64(res.CPUMillis), 0.6)
	}
	return secs
}

// remediable reports whether some retry can fix the run: it has no defect and the
// cluster has a configuration that satisfies its needs.
func (s *Scenario) remediable(ru *run) bool {
	if ru.defect != "" {
		return false
	}
	_, ok := s.cheapestSufficient(ru, ru.t.config, nil)
	return ok
}

// cheapestSufficient returns the cheapest configuration that satisfies the run's
// needs, changing only what the failed configuration lacks: memory or local storage
// if it is short,
// the GPU setup if GPU memory is short, the deadline if it is too short; a bad node
// is avoided. ok is false when no configuration in the cluster is enough.
func (s *Scenario) cheapestSufficient(ru *run, failed failure.Option, avoid []string) (failure.Option, bool) {
	t := ru.t
	opt := failure.Option{Resources: failed.Resources, Params: copyParams(failed.Params), DeadlineSeconds: failed.DeadlineSeconds, AvoidNodes: avoid}
	need := ru.memNeed()
	if float64(opt.Resources.MemoryBytes) < need {
		mem := math.Ceil(need/(256<<20)) * (256 << 20)
		if mem > s.Cluster.MaxMemoryGiB*gib {
			return failure.Option{}, false
		}
		opt.Resources.MemoryBytes = int64(mem)
	}
	if lim, need := float64(opt.Resources.EphemeralStorageBytes), ru.diskNeed(); lim > 0 && lim < need {
		disk := math.Ceil(need/gib) * gib
		if disk > s.Cluster.MaxEphemeralGiB*gib {
			return failure.Option{}, false
		}
		opt.Resources.EphemeralStorageBytes = int64(disk)
	}
	if opt.Resources.GPU > 0 {
		best, ok := s.cheapestGPU(ru, opt)
		if !ok {
			return failure.Option{}, false
		}
		opt = best
	}
	rt := ru.runtime(opt.Resources, t.tunablesOf(opt.Params))
	if opt.DeadlineSeconds > 0 && rt > opt.DeadlineSeconds {
		opt.DeadlineSeconds = math.Ceil(rt*1.01/60) * 60
	}
	return opt, true
}

// cheapestGPU keeps opt's GPU setup if it fits, else finds the cheapest setup that
// does among the GPU models, counts and the tunables the job declares.
func (s *Scenario) cheapestGPU(ru *run, opt failure.Option) (failure.Option, bool) {
	t := ru.t
	fits := func(res failure.Resources, tu tunables) bool {
		return ru.gpuNeed(res, tu) <= float64(s.Catalogue.GPUMemory(res.GPUType))*usableGPUFraction
	}
	if fits(opt.Resources, t.tunablesOf(opt.Params)) {
		return opt, true
	}
	best, bestCost, found := opt, math.Inf(1), false
	for _, cand := range gpuSpace(s, t, opt) {
		tu := t.tunablesOf(cand.Params)
		if !fits(cand.Resources, tu) {
			continue
		}
		if c := s.Catalogue.Cost(cand.Resources, ru.runtime(cand.Resources, tu)); c < bestCost {
			best, bestCost, found = cand, c, true
		}
	}
	return best, found
}

// gpuSpace enumerates GPU setups a remediation may choose for t: every GPU model of
// the catalogue, GPU counts up to the largest node, and the declared tunables
// (micro-batch halved with accumulation doubled, precision, checkpointing).
func gpuSpace(s *Scenario, t *template, from failure.Option) []failure.Option {
	var out []failure.Option
	base := t.tunablesOf(from.Params)
	mbs := []int{base.microBatch}
	if _, ok := t.tunables["micro_batch_size"]; ok {
		for mb := base.microBatch / 2; mb >= 1 && len(mbs) < 5; mb /= 2 {
			mbs = append(mbs, mb)
		}
	}
	precs := []string{base.precision}
	if _, ok := t.tunables["precision"]; ok && base.precision == "fp32" {
		precs = append(precs, "bf16")
	}
	ckpts := []bool{base.checkpointing}
	if _, ok := t.tunables["activation_checkpointing"]; ok && !base.checkpointing {
		ckpts = append(ckpts, true)
	}
	for _, g := range s.Catalogue.GPUs {
		for n := 1; n <= s.Cluster.MaxGPUs; n *= 2 {
			for _, mb := range mbs {
				for _, p := range precs {
					for _, c := range ckpts {
						tu := tunables{microBatch: mb, gradAccum: base.gradAccum * base.microBatch / mb, precision: p, checkpointing: c}
						res := from.Resources
						res.GPU, res.GPUType = n, g.Name
						out = append(out, failure.Option{Resources: res, Params: tu.params(), DeadlineSeconds: from.DeadlineSeconds, AvoidNodes: from.AvoidNodes})
					}
				}
			}
		}
	}
	return out
}

func copyParams(p map[string]string) map[string]string {
	if p == nil {
		return nil
	}
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

// nodeFor returns the node an attempt runs on: the run's bad node again with the
// scenario's stickiness unless the attempt avoids it, else a fresh one.
func (s *Scenario) nodeFor(ru *run, attempt int, r *rand.Rand, avoid []string) string {
	if ru.badNode != "" && !slices.Contains(avoid, ru.badNode) && r.Float64() < s.Failures.BadNodeStickiness {
		return ru.badNode
	}
	pool := "cpu"
	if ru.t.config.Resources.GPU > 0 {
		pool = "gpu"
	}
	return fmt.Sprintf("%s-node-%d", pool, (ru.t.index*7+ru.index*13+attempt*31+r.IntN(1000))%997)
}
