package main

import (
	"math"
	"math/rand/v2"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/optimizer"
	"github.com/autofix/autofix/recommender"
	"github.com/autofix/autofix/sim"
)

// autofixPolicy retries as the recommender advises.
type autofixPolicy struct{ r *recommender.Recommender }

func (autofixPolicy) Name() string { return "autofix" }

func (p autofixPolicy) Retry(ev *failure.Event, history []failure.Outcome) (failure.Option, bool) {
	rec := p.r.Recommend(ev, history)
	return rec.ChosenOption()
}

// recommenderFor builds the recommender for a scenario's cluster and prices; set, if
// not nil, changes the options first.
func recommenderFor(s *sim.Scenario, c *classifier.Classifier, m *models.Models,
	set func(*recommender.Options)) *recommender.Recommender {
	opts := recommender.Options{
		Catalogue:         s.Catalogue,
		MaxMemoryBytes:    int64(s.Cluster.MaxMemoryGiB * (1 << 30)),
		MaxCPUMillis:      int64(s.Cluster.MaxCPU * 1000),
		MaxEphemeralBytes: int64(s.Cluster.MaxEphemeralGiB * (1 << 30)),
		MaxGPUs:           s.Cluster.MaxGPUs,
	}
	if set != nil {
		set(&opts)
	}
	return recommender.New(c, m, opts)
}

// explorer retries with random configurations around the failed one, to collect
// examples of what succeeds and what does not for the models to learn from.
type explorer struct {
	c   *classifier.Classifier
	s   *sim.Scenario
	rng *rand.Rand
}

func (*explorer) Name() string { return "explore" }

func (e *explorer) Retry(ev *failure.Event, history []failure.Outcome) (failure.Option, bool) {
	cl := e.c.Classify(ev)
	if !cl.Retryable {
		return failure.Option{}, false
	}
	opt := failure.Option{Resources: ev.Job.Resources, Params: ev.Job.Params}
	ctx := models.NewContext(ev, cl.Category, history, e.s.Catalogue)
	ref := math.Max(float64(opt.Resources.MemoryBytes), ctx.MemEstimate)
	switch cl.Category {
	case failure.OOMMemory:
		opt.Resources.MemoryBytes = int64(ref * math.Exp(e.uniform(-0.1, 1.0)))
	case failure.OOMGPU:
		space := optimizer.Space{Failed: opt, Declared: ev.Job.Tunables, GPU: true, MaxGPUs: e.s.Cluster.MaxGPUs}
		for _, g := range e.s.Catalogue.GPUs {
			space.GPUTypes = append(space.GPUTypes, g.Name)
		}
		cands := space.Candidates()
		opt = cands[e.rng.IntN(len(cands))]
	case failure.DiskFull:
		if lim := float64(opt.Resources.EphemeralStorageBytes); lim > 0 {
			ref := math.Max(lim, ctx.Disk.Estimate)
			opt.Resources.EphemeralStorageBytes = int64(ref * math.Exp(e.uniform(-0.1, 1.0)))
		}
	case failure.Timeout:
		opt.DeadlineSeconds = math.Ceil(ev.Failure.DurationSeconds * math.Exp(e.uniform(0, 1.4)))
	case failure.Hardware:
		if e.rng.Float64() < 0.7 {
			opt.AvoidNodes = []string{ev.Failure.Node}
		}
	default:
		if e.rng.Float64() < 0.5 {
			opt.Resources.MemoryBytes = int64(ref * math.Exp(e.uniform(0, 0.5)))
		}
	}
	return opt, true
}

func (e *explorer) uniform(lo, hi float64) float64 { return lo + (hi-lo)*e.rng.Float64() }

// scenarioBrain is serve's recommender for a scenario's cluster and prices, for the
// benchmarks that drive serve's parts on a scenario's events.
type scenarioBrain struct {
	rec        *recommender.Recommender
	classifier *classifier.Classifier
	models     *models.Models
	catalogue  failure.Catalogue
}

func newScenarioBrain(s *sim.Scenario) (*scenarioBrain, error) {
	d := config.Default()
	c, err := loadClassifier("", d.Classifier.MinConfidence)
	if err != nil {
		return nil, err
	}
	m, err := loadModels("")
	if err != nil {
		return nil, err
	}
	rec := recommenderFor(s, c, m, func(o *recommender.Options) {
		o.BackoffSeconds, o.MaxCostMultiple = d.BackoffSeconds, d.Policy.MaxCostMultiple
	})
	return &scenarioBrain{rec: rec, classifier: c, models: m, catalogue: s.Catalogue}, nil
}
