package recommender

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/optimizer"
)

// Classifier names the category of a failure.
type Classifier interface {
	Classify(ev *failure.Event) failure.Classification
}

// Options tune recommendations. Sizes are bytes, times seconds, costs dollars.
type Options struct {
	Catalogue failure.Catalogue
	// MaxMemoryBytes, MaxCPUMillis, MaxEphemeralBytes and MaxGPUs describe the
	// largest node, until SetCluster says otherwise.
	MaxMemoryBytes    int64
	MaxCPUMillis      int64
	MaxEphemeralBytes int64
	MaxGPUs           int
	// Quotas are, by namespace, what one retry may take at most: the namespace's
	// quota headroom. Namespaces not listed are not limited.
	Quotas map[string]failure.Resources
	// MaxCostMultiple caps a retry's run cost at this multiple of the failed
	// configuration's. Default 4.
	MaxCostMultiple float64
	// MinPSuccess is the probability of fixing what failed (failure.Option.PFix) the
	// chosen option must reach when one can: the cheapest option at or above it is
	// chosen. Default 0.95.
	MinPSuccess float64
	// Weights, when set, choose by a weighted sum of the objectives — probability of
	// failure, expected cost and, with Runtime, runtime — each scaled to [0, 1] over
	// the Pareto front, instead of by the target.
	Weights []float64
	// Runtime adds the runtime of a successful retry as a third objective: faster
	// options (more or faster GPUs) join the Pareto front.
	Runtime bool
	// MinPFix is the probability of fixing what failed below which no retry is
	// made at all: nothing the search found is likely to work. Default 0.3.
	MinPFix float64
	// MaxOptions bounds the options a recommendation lists. Default 12.
	MaxOptions int
	// MemoryStep is the factor between memory (and local-storage) candidates.
	// Default 1.04.
	MemoryStep float64
	// BackoffSeconds is the delay before retrying transient failures. Default 60.
	BackoffSeconds float64
	// Search configures the search of spaces too large to enumerate.
	Search optimizer.Search
}

// Recommender makes recommendations. It is safe for concurrent use.
type Recommender struct {
	classifier Classifier
	models     atomic.Pointer[versioned]
	shadow     atomic.Pointer[versioned]
	opts       Options
	scorers    []optimizer.Scorer
	scratch    sync.Pool
	cluster    atomic.Pointer[view]
	queues     atomic.Pointer[Queues]
}

// New returns a recommender.
func New(c Classifier, m *models.Models, opts Options) *Recommender {
	if opts.MaxCostMultiple <= 0 {
		opts.MaxCostMultiple = 4
	}
	if opts.MinPSuccess <= 0 {
		opts.MinPSuccess = 0.95
	}
	if opts.MaxOptions <= 0 {
		opts.MaxOptions = 12
	}
	if opts.MinPFix <= 0 {
		opts.MinPFix = 0.3
	}
	if opts.MemoryStep <= 1 {
		opts.MemoryStep = 1.04
	}
	if opts.BackoffSeconds <= 0 {
		opts.BackoffSeconds = 60
	}
	r := &Recommender{classifier: c, opts: opts,
		scorers: []optimizer.Scorer{optimizer.PFailure{}, optimizer.ExpectedCost{}}}
	r.models.Store(&versioned{m: m})
	if opts.Runtime {
		r.scorers = append(r.scorers, optimizer.Runtime{})
	}
	r.scratch.New = func() any { return new(models.Scratch) }
	r.SetCluster(Cluster{Largest: failure.Resources{MemoryBytes: opts.MaxMemoryBytes, CPUMillis: opts.MaxCPUMillis,
		EphemeralStorageBytes: opts.MaxEphemeralBytes, GPU: opts.MaxGPUs}})
	return r
}

// Recommend advises how to retry the failure ev, given the outcomes of earlier runs
// of its job's template (oldest first).
func (r *Recommender) Recommend(ev *failure.Event, history []failure.Outcome) failure.Recommendation {
	active := r.models.Load() // one set of models for the whole recommendation
	rec := failure.Recommendation{
		EventID: ev.ID, Chosen: -1, ModelVersion: active.m.Name, ModelRegistryVersion: active.version,
		Job: failure.JobRef{Namespace: ev.Job.Namespace, Name: ev.Job.Name, Template: ev.Job.Template, Attempt: ev.Job.Attempt},
	}
	rec.Classification = r.classifier.Classify(ev)
	cl := &rec.Classification
	if !cl.Retryable {
		rec.Options = []failure.Option{}
		rec.Explanation = notRetryable(cl)
		return rec
	}
	if cl.Action == failure.IncreaseShm {
		// The fix is a bigger /dev/shm (an emptyDir in memory), which the job's spec
		// holds and autofix does not size yet: a retry as it is would fail again.
		rec.Options = []failure.Option{}
		rec.Explanation = what(cl) + " It needs a larger /dev/shm (an emptyDir volume with medium Memory and a sizeLimit, " +
			"counted against the memory limit), which autofix does not size yet; a retry as it is would fail again, so it is left to a person."
		return rec
	}
	ctx := models.NewContext(ev, cl.Category, history, r.opts.Catalogue)
	nodes := r.cluster.Load()
	scratch := r.scratch.Get().(*models.Scratch)
	defer r.scratch.Put(scratch)
	res, note := r.solve(r.problem(active.m, ev, &ctx, cl, nodes, scratch), ev)
	r.conclude(&rec, res, ev, &ctx)
	if rec.Retry {
		rec.Explanation += note
	}
	if sh := r.shadow.Load(); sh != nil && sh.version != active.version {
		// A scratch of its own: a scratch's caches are keyed by the context, not by the
		// models, and would hand the candidate the active version's predictions.
		own := r.scratch.Get().(*models.Scratch)
		rec.Shadow = r.shadowOf(sh, ev, &ctx, cl, nodes, &rec, own)
		r.scratch.Put(own)
	}
	return rec
}

// problem is the search for a retry of ev with models m.
func (r *Recommender) problem(m *models.Models, ev *failure.Event, ctx *models.Context, cl *failure.Classification, nodes *view,
	scratch *models.Scratch) optimizer.Problem {
	baseCost := r.opts.Catalogue.Cost(ev.Job.Resources, m.BaseRuntime(ctx, &r.opts.Catalogue))
	prob := optimizer.Problem{
		Space:     r.space(ev, ctx, cl, nodes),
		Predictor: predictor{m, ctx, &r.opts.Catalogue, scratch, baseCost},
		Filters: []optimizer.Filter{
			optimizer.NodeFit{MaxMemoryBytes: nodes.largest.MemoryBytes, MaxCPUMillis: nodes.largest.CPUMillis,
				MaxEphemeralBytes: nodes.largest.EphemeralStorageBytes, MaxGPUs: nodes.largest.GPU},
			optimizer.MaxCostMultiple{Max: r.opts.MaxCostMultiple},
			optimizer.Quota{Limit: r.opts.Quotas[ev.Job.Namespace]},
		},
		Scorers:    r.scorers,
		MaxOptions: r.opts.MaxOptions,
		Chooser:    optimizer.Target{MinPFix: r.opts.MinPSuccess},
		Search:     r.opts.Search,
	}
	if len(r.opts.Weights) > 0 {
		prob.Chooser = optimizer.Weighted{Weights: r.opts.Weights}
	}
	return prob
}

// conclude fills rec from the search's result: the options, the one chosen, and why
// (or why not to retry).
func (r *Recommender) conclude(rec *failure.Recommendation, res optimizer.Result, ev *failure.Event, ctx *models.Context) {
	cl := &rec.Classification
	rec.Considered = res.Considered
	if res.Chosen < 0 {
		rec.Options = []failure.Option{}
		rec.Explanation = fmt.Sprintf("%s No configuration within the cluster's limits, the namespace's and queue's quotas and the cost cap (%.1fx) was found among %d candidates; not retrying.",
			what(cl), r.opts.MaxCostMultiple, res.Considered)
		return
	}
	if best := res.Options[0]; best.PFix < r.opts.MinPFix {
		rec.Options = []failure.Option{}
		rec.Explanation = fmt.Sprintf("%s None of the %s is likely to fix it (the best has probability %.2f); not retrying.",
			what(cl), considered(res), best.PFix)
		return
	}
	rec.Retry, rec.Chosen = true, 0
	rec.Options = res.Options
	for i := range rec.Options {
		o := &rec.Options[i]
		roundFigures(o)
		if err := o.Check(); err != nil {
			// The optimizer keeps such options out; rounding cannot bring one in.
			rec.Retry, rec.Chosen, rec.Options = false, -1, []failure.Option{}
			rec.Explanation = fmt.Sprintf("%s The predicted figures are out of range (%v); not retrying.", what(cl), err)
			return
		}
		o.Params = copyMap(o.Params)
		o.Changes = changes(ev, o, &r.opts.Catalogue)
	}
	rec.Explanation = explain(cl, ctx, &rec.Options[0], considered(res))
}

// space is what a retry of a failure of this category may change.
func (r *Recommender) space(ev *failure.Event, ctx *models.Context, cl *failure.Classification, nodes *view) *optimizer.Space {
	res := ev.Job.Resources
	s := &optimizer.Space{
		Failed:   failure.Option{Resources: res, Params: ev.Job.Params},
		Declared: ev.Job.Tunables,
		Node:     ev.Failure.Node,
	}
	mem := ctx.Memory()
	memoryAtRisk := mem.AtRisk(float64(res.MemoryBytes))
	switch cl.Category {
	case failure.OOMMemory:
		s.Memory = true
	case failure.OOMGPU:
		s.GPU = true
		s.GPUTypes, s.MaxGPUs = nodes.gpuTypes, nodes.largest.GPU
	case failure.Timeout:
		if ctx.Deadline > 0 {
			s.Deadline, s.DeadlineMultiples = ctx.Deadline, []float64{1.25, 1.5, 2, 3, 4}
		}
	case failure.DiskFull:
		if res.EphemeralStorageBytes == 0 {
			// No limit of its own was passed: the node's disk filled. Another node.
			s.Avoid = true
		}
	case failure.Hardware:
		s.Avoid = true
	case failure.SchedulingCapacity:
		s.Delay = 5 * r.opts.BackoffSeconds
	default:
		if cl.Action == failure.RetryBackoff {
			s.Delay = r.opts.BackoffSeconds
		}
	}
	if s.Memory || memoryAtRisk {
		s.Memory = true
		s.MemoryFloor, s.MemoryCap, s.MemoryStep = r.limits(float64(res.MemoryBytes), mem.Level(),
			cl.Category == failure.OOMMemory, nodes.largest.MemoryBytes)
	}
	// Local storage that failed, or that the template's runs are about to outgrow
	// (a run can be short of both memory and storage), varies the same way.
	disk := float64(res.EphemeralStorageBytes)
	if disk > 0 && (cl.Category == failure.DiskFull || ctx.Disk.AtRisk(disk)) {
		s.Disk = true
		s.DiskFloor, s.DiskCap, s.DiskStep = r.limits(disk, ctx.Disk.Level(), cl.Category == failure.DiskFull, nodes.largest.EphemeralStorageBytes)
	}
	return s
}

// limits is the range of candidate limits for a resource whose limit was failed and
// whose need the history estimates at est (0: unknown): above the failed limit when
// the resource ran out, else a few steps up to just above the need; at most max (0:
// no bound), in at most maxMemorySteps steps, finer near the floor when the range is
// short.
func (r *Recommender) limits(failed, est float64, ranOut bool, maxBytes int64) (floor, cap int64, step float64) {
	lo, hi := failed, math.Max(failed, 1.5*est)
	if ranOut {
		lo *= r.opts.MemoryStep
		hi = math.Max(lo*8, 2*est)
	}
	if maxBytes > 0 {
		hi = math.Min(hi, float64(maxBytes))
	}
	return int64(lo), int64(hi), math.Max(r.opts.MemoryStep, math.Pow(hi/lo, 1.0/maxMemorySteps))
}

// maxMemorySteps bounds the memory candidates of one recommendation.
const maxMemorySteps = 48

// predictor adapts the models to the optimizer.
type predictor struct {
	m        *models.Models
	ctx      *models.Context
	cat      *failure.Catalogue
	scratch  *models.Scratch
	baseCost float64
}

func (p predictor) Predict(o *failure.Option) {
	pred := p.m.Predict(p.ctx, o, p.cat, p.scratch)
	o.PSuccess, o.PFix = pred.PSuccess, pred.PFix
	o.RuntimeSeconds, o.RunCost, o.ExpectedCost = pred.RuntimeSeconds, pred.RunCost, pred.ExpectedCost
	if p.baseCost > 0 {
		o.CostMultiple = pred.RunCost / p.baseCost
	}
}

// roundFigures rounds an option's predictions to the digits worth showing; the
// optimizer works on the full figures.
func roundFigures(o *failure.Option) {
	o.PSuccess, o.PFix = round(o.PSuccess, 4), round(o.PFix, 4)
	o.RuntimeSeconds = math.Round(o.RuntimeSeconds)
	o.RunCost, o.ExpectedCost = round(o.RunCost, 4), round(o.ExpectedCost, 4)
	o.CostMultiple = round(o.CostMultiple, 3)
}

// round rounds x to 1, 2, 3 or 4 decimal digits.
func round(x float64, digits int) float64 {
	f := [...]float64{1, 10, 100, 1000, 10000}[digits]
	return math.Round(x*f) / f
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// changes describe what an option changes, for people.
func changes(ev *failure.Event, o *failure.Option, cat *failure.Catalogue) []string {
	var out []string
	from, to := ev.Job.Resources, o.Resources
	if from.MemoryBytes != to.MemoryBytes {
		out = append(out, fmt.Sprintf("memory %s -> %s", failure.FormatBytes(from.MemoryBytes), failure.FormatBytes(to.MemoryBytes)))
	}
	if from.EphemeralStorageBytes != to.EphemeralStorageBytes {
		out = append(out, fmt.Sprintf("ephemeral storage %s -> %s", failure.FormatBytes(from.EphemeralStorageBytes), failure.FormatBytes(to.EphemeralStorageBytes)))
	}
	if from.GPUType != to.GPUType {
		out = append(out, fmt.Sprintf("GPU %s -> %s (%.0f GiB)", from.GPUType, to.GPUType, float64(cat.GPUMemory(to.GPUType))/(1<<30)))
	}
	if from.GPU != to.GPU {
		out = append(out, fmt.Sprintf("GPUs %d -> %d", from.GPU, to.GPU))
	}
	for _, k := range sortedKeys(o.Params) {
		if v, old := o.Params[k], ev.Job.Params[k]; v != old {
			out = append(out, fmt.Sprintf("%s %s -> %s", k, old, v))
		}
	}
	if o.DeadlineSeconds > 0 {
		out = append(out, fmt.Sprintf("deadline -> %s", seconds(o.DeadlineSeconds)))
	}
	for _, n := range o.AvoidNodes {
		out = append(out, "avoid node "+n)
	}
	if o.DelaySeconds > 0 {
		out = append(out, "retry after "+seconds(o.DelaySeconds))
	}
	if len(out) == 0 {
		out = append(out, "same configuration")
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func seconds(s float64) string {
	switch {
	case s >= 3600:
		return fmt.Sprintf("%.1fh", s/3600)
	case s >= 60:
		return fmt.Sprintf("%.0fm", s/60)
	}
	return fmt.Sprintf("%.0fs", s)
}

func what(cl *failure.Classification) string {
	how := fmt.Sprintf("rules %s", strings.Join(cl.Rules, ", "))
	if cl.Learned {
		how = "the learned model"
	}
	out := fmt.Sprintf("The job failed with %s (confidence %.2f, from %s)", cl.Category, cl.Confidence, how)
	// The first line of evidence that is not the model's own note.
	for _, ev := range cl.Evidence {
		if strings.HasPrefix(ev, "the learned model says") {
			continue
		}
		if r := []rune(ev); len(r) > maxQuote {
			ev = string(r[:maxQuote]) + "…"
		}
		return fmt.Sprintf("%s; the evidence: %s.", out, strings.TrimSuffix(ev, "."))
	}
	return out + "."
}

// maxQuote bounds the evidence an explanation quotes, in characters.
const maxQuote = 160

func notRetryable(cl *failure.Classification) string {
	if cl.Category == failure.Unknown {
		return "No rule explains this failure with enough confidence, so it is not retried; it needs a person to look at it."
	}
	return what(cl) + " A retry runs into the same problem, so it is not retried: it needs a change to the code, data or configuration."
}

// considered says how many configurations a result looked at.
func considered(res optimizer.Result) string {
	if res.Searched {
		return fmt.Sprintf("%d configurations searched (of %d)", res.Considered, res.SpaceSize)
	}
	if res.Considered == 1 {
		return "1 configuration considered"
	}
	return fmt.Sprintf("%d configurations considered", res.Considered)
}

func explain(cl *failure.Classification, ctx *models.Context, o *failure.Option, considered string) string {
	var b strings.Builder
	b.WriteString(what(cl))
	switch {
	case ctx.MemFloor > 0 && ctx.MemEstimate > 0:
		fmt.Fprintf(&b, " It was killed at its %s memory limit; its recent runs peaked near %s.", failure.FormatBytes(int64(ctx.MemFloor)), failure.FormatBytes(int64(ctx.MemEstimate)))
	case ctx.MemFloor > 0 && ctx.MemBounds != nil:
		fmt.Fprintf(&b, " It was killed at its %s memory limit; its runs have no recorded peak, and the limits they succeeded and were killed at put its need at or below %s with probability 0.95.",
			failure.FormatBytes(int64(ctx.MemFloor)), failure.FormatBytes(int64(ctx.MemBounds.Quantile(0.95))))
	case ctx.MemFloor > 0 && ctx.History > 0:
		fmt.Fprintf(&b, " It was killed at its %s memory limit; its successful runs have no recorded peak to learn its need from.", failure.FormatBytes(int64(ctx.MemFloor)))
	case ctx.MemFloor > 0:
		fmt.Fprintf(&b, " It was killed at its %s memory limit and has no successful runs to learn its need from.", failure.FormatBytes(int64(ctx.MemFloor)))
	case ctx.Disk.Floor > 0 && ctx.Disk.Estimate > 0:
		fmt.Fprintf(&b, " It was evicted at its %s ephemeral-storage limit; its recent runs used up to %s.", failure.FormatBytes(int64(ctx.Disk.Floor)), failure.FormatBytes(int64(ctx.Disk.Estimate)))
	case ctx.Disk.Floor > 0 && ctx.Disk.Bounds != nil:
		fmt.Fprintf(&b, " It was evicted at its %s ephemeral-storage limit; its runs have no recorded usage, and the limits they succeeded and were evicted at put its need at or below %s with probability 0.95.",
			failure.FormatBytes(int64(ctx.Disk.Floor)), failure.FormatBytes(int64(ctx.Disk.Bounds.Quantile(0.95))))
	case ctx.Disk.Floor > 0:
		fmt.Fprintf(&b, " It was evicted at its %s ephemeral-storage limit and has no successful runs to learn its need from.", failure.FormatBytes(int64(ctx.Disk.Floor)))
	case ctx.GPUFloor > 0:
		fmt.Fprintf(&b, " It ran out of GPU memory on %d x %s (%s each).", ctx.Failed.GPU, ctx.Failed.GPUType, failure.FormatBytes(int64(ctx.GPUFloor)))
	}
	fmt.Fprintf(&b, " Of %s, the chosen one (%s) succeeds with probability %.2f at an expected cost of $%.2f (%.2fx the failed run's cost).",
		considered, strings.Join(o.Changes, ", "), o.PSuccess, o.ExpectedCost, o.CostMultiple)
	return b.String()
}
