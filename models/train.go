package models

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"slices"

	"github.com/autofix/autofix/failure"
)

// Example is one retry and what became of it: what was known when it was planned
// (the failure, its classification and the history of the job's template), the
// configuration it ran with, and its outcome — with the classification of its own
// failure, if it failed.
type Example struct {
	Event    failure.Event     `json:"event"`
	Category failure.Category  `json:"category"`
	History  []failure.Outcome `json:"history"`
	Option   failure.Option    `json:"option"`
	Outcome  failure.Outcome   `json:"outcome"`
	// Result is the category of the retry's failure; empty when it succeeded.
	Result failure.Category `json:"result,omitempty"`
}

// TrainOptions tune training.
type TrainOptions struct {
	// Name names the models (for recommendations and the artifact).
	Name string
	// Lambda is the L2 penalty of the regressions. Default 1e-4.
	Lambda float64
	// TestShare is the share of templates held out for evaluation. Default 0.2.
	TestShare float64
	// HeldOut, when set, says which examples (by index) are held out for evaluation,
	// instead of a share of the templates: a time-ordered split holds out the latest.
	HeldOut func(i int) bool
	// Prior, when set, gives the models that have too few examples to be fitted:
	// fewer than MinExamples, or all of one label (a ledger of a cluster without GPUs
	// has no GPU retries, one without timeouts no deadline to learn). Without it such
	// a model is fitted to what there is, or fails for want of any example.
	Prior *Models
	// MinExamples is how many training examples a model needs when Prior is set.
	// Default 30.
	MinExamples int
}

// Train fits the models to examples. Examples are split by template, so that the
// evaluation measures jobs the models have not seen.
func Train(examples []Example, cat *failure.Catalogue, opts TrainOptions) (*Models, error) {
	if opts.Lambda <= 0 {
		opts.Lambda = 1e-4
	}
	if opts.TestShare <= 0 || opts.TestShare >= 1 {
		opts.TestShare = 0.2
	}
	if opts.MinExamples <= 0 {
		opts.MinExamples = 30
	}
	held := opts.HeldOut
	if held == nil {
		held = func(i int) bool { return heldOut(examples[i].Event.Job.Template, opts.TestShare) }
	}
	var train, test []*prepared
	for i := range examples {
		p := prepare(&examples[i], cat)
		if held(i) {
			test = append(test, p)
		} else {
			train = append(train, p)
		}
	}
	if len(train) == 0 || len(test) == 0 {
		if opts.HeldOut != nil {
			return nil, fmt.Errorf("need examples both to train on and to hold out, got %d and %d", len(train), len(test))
		}
		return nil, fmt.Errorf("need examples from several templates to train and evaluate, got %d", len(examples))
	}
	m := &Models{Kind: ArtifactKind, Version: ArtifactVersion, Name: opts.Name, FailAt: map[failure.Category]float64{}}
	var kept []string
	// enough reports whether a model has the examples to be fitted; when it has not
	// and there is a prior, the model is kept from the prior.
	enough := func(name string, ys []float64) bool {
		if opts.Prior == nil || len(ys) >= opts.MinExamples && slices.Contains(ys, 0) && slices.Contains(ys, 1) {
			return true
		}
		kept = append(kept, name)
		return false
	}
	var err error
	fit := func(name string, sel func(*prepared) ([]float64, float64, bool), prior *Logistic) (*Logistic, error) {
		var xs [][]float64
		var ys []float64
		for _, p := range train {
			if x, y, ok := sel(p); ok {
				xs, ys = append(xs, x), append(ys, y)
			}
		}
		if !enough(name, ys) {
			return prior.clone(), nil
		}
		return fitLogistic(xs, ys, opts.Lambda)
	}
	var prior Models
	if opts.Prior != nil {
		prior = *opts.Prior
	}
	if m.Memory, err = fit("memory", (*prepared).memoryExample, prior.Memory); err != nil {
		return nil, fmt.Errorf("memory model: %w", err)
	}
	if opts.Prior == nil && !slices.ContainsFunc(train, func(p *prepared) bool { _, _, ok := p.diskExample(); return ok }) {
		// No retry ran with a local-storage limit: the features mean the same for
		// memory, so its model is the best prior.
		m.Disk = &Logistic{Weights: slices.Clone(m.Memory.Weights)}
	} else if m.Disk, err = fit("disk", (*prepared).diskExample, prior.Disk); err != nil {
		return nil, fmt.Errorf("disk model: %w", err)
	}
	if m.GPU, err = fit("gpu", (*prepared).gpuExample, prior.GPU); err != nil {
		return nil, fmt.Errorf("gpu model: %w", err)
	}
	if m.Deadline, err = fit("deadline", (*prepared).deadlineExample, prior.Deadline); err != nil {
		return nil, fmt.Errorf("deadline model: %w", err)
	}
	var rxs [][]float64
	var rys []float64
	other, fails := 0, map[failure.Category][]float64{}
	for _, p := range train {
		if x, y, ok := p.runtimeExample(); ok {
			rxs, rys = append(rxs, x), append(rys, y)
		}
		if isOther(p.ex.Result) {
			other++
		}
		if !p.ex.Outcome.Succeeded && p.ctx.RuntimeKnown {
			fails[p.ex.Category] = append(fails[p.ex.Category], math.Min(1, p.ex.Outcome.DurationSeconds/p.ctx.Runtime))
		}
	}
	if opts.Prior != nil && len(rys) < opts.MinExamples {
		kept = append(kept, "runtime")
		m.Runtime = &Linear{Weights: slices.Clone(prior.Runtime.Weights)}
	} else if m.Runtime, err = fitLinear(rxs, rys, 1e-3); err != nil {
		return nil, fmt.Errorf("runtime model: %w", err)
	}
	m.Other = float64(other) / float64(len(train))
	for c, f := range prior.FailAt {
		m.FailAt[c] = f // categories no failed retry of the training examples had
	}
	for c, fs := range fails {
		m.FailAt[c] = mean(fs)
	}
	xs, ys := m.successExamples(train, cat)
	if !enough("success", ys) {
		m.Success = prior.Success.clone()
	} else if m.Success, err = fitLogistic(xs, ys, opts.Lambda); err != nil {
		return nil, fmt.Errorf("success calibration: %w", err)
	}
	m.Evaluation = m.evaluate(train, test, cat)
	m.Evaluation.Kept = kept
	return m, nil
}

// PSuccess is the chance the models give that the example's retry succeeds, as its
// decision would have had it: from the failure, its classification and the history
// of its template as they were then, for the option the retry ran. Scoring two
// models' PSuccess of the same examples against their outcomes compares them on the
// same decisions.
func (m *Models) PSuccess(ex *Example, cat *failure.Catalogue, s *Scratch) float64 {
	c := NewContext(&ex.Event, ex.Category, ex.History, *cat)
	return m.Predict(&c, &ex.Option, cat, s).PSuccess
}

// clone returns a copy of l (nil for nil).
func (l *Logistic) clone() *Logistic {
	if l == nil {
		return nil
	}
	return &Logistic{Weights: slices.Clone(l.Weights)}
}

// successExamples are the examples of the recalibration of P(success) (Platt
// scaling of the product of the chances): the training examples whose chances come
// from the models alone — the bounds' chances are cautious, by design, and
// recalibrating the product to them would make the models' over-confident.
func (m *Models) successExamples(train []*prepared, cat *failure.Catalogue) ([][]float64, []float64) {
	raw := *m
	raw.Success = nil
	s := &Scratch{}
	var xs [][]float64
	var ys []float64
	for _, p := range train {
		if p.bounded() {
			continue
		}
		q := clamp(raw.Predict(&p.ctx, &p.ex.Option, cat, s).PSuccess, 1e-6, 1-1e-6)
		y := 0.0
		if p.ex.Outcome.Succeeded {
			y = 1
		}
		xs, ys = append(xs, []float64{1, math.Log(q / (1 - q))}), append(ys, y)
	}
	return xs, ys
}

// bounded reports whether the bounds, not the models, give one of the chances of
// the example's retry.
func (p *prepared) bounded() bool {
	return p.ctx.MemBounds != nil || p.ctx.Disk.Bounds != nil && p.ex.Option.Resources.EphemeralStorageBytes > 0 || p.gpuBounded()
}

func isOther(c failure.Category) bool {
	return c == failure.NetworkTransient || c == failure.Preempted || c == failure.Hardware
}

// heldOut puts a template in the test split by a hash of its name.
func heldOut(template string, share float64) bool {
	h := fnv.New32a()
	_, _ = io.WriteString(h, template)
	return float64(h.Sum32()%1000) < share*1000
}

// prepared is an example with its context computed once.
type prepared struct {
	ex      *Example
	ctx     Context
	tu      Tunables
	runtime float64 // the actual runtime of the retry had it succeeded, if known
	cap     float64
	cat     *failure.Catalogue
}

func prepare(ex *Example, cat *failure.Catalogue) *prepared {
	p := &prepared{ex: ex, ctx: NewContext(&ex.Event, ex.Category, ex.History, *cat), cat: cat}
	p.tu = p.ctx.TunablesOf(ex.Option.Params)
	p.cap = float64(cat.GPUMemory(ex.Option.Resources.GPUType))
	if ex.Outcome.Succeeded {
		p.runtime = ex.Outcome.DurationSeconds
	}
	return p
}

// memoryLabel labels memory as enough (success) or not (an OOM); other failures say
// nothing about the memory.
func (p *prepared) memoryLabel() (float64, bool) {
	switch {
	case p.ex.Outcome.Succeeded:
		return 1, true
	case p.ex.Result == failure.OOMMemory:
		return 0, true
	}
	return 0, false
}

// memoryExample is the memory model's example: a labelled retry whose chance the
// model gives (not the bounds).
func (p *prepared) memoryExample() ([]float64, float64, bool) {
	y, ok := p.memoryLabel()
	if !ok || p.ctx.MemBounds != nil {
		return nil, 0, false
	}
	return memoryFeatures(&p.ctx, float64(p.ex.Option.Resources.MemoryBytes), nil), y, true
}

// diskLabel labels an ephemeral-storage limit as enough or not (an eviction);
// retries without a limit say nothing about it.
func (p *prepared) diskLabel() (float64, bool) {
	switch {
	case p.ex.Option.Resources.EphemeralStorageBytes == 0:
		return 0, false
	case p.ex.Outcome.Succeeded:
		return 1, true
	case p.ex.Result == failure.DiskFull:
		return 0, true
	}
	return 0, false
}

// diskExample is the local-storage model's example, as memoryExample is memory's.
func (p *prepared) diskExample() ([]float64, float64, bool) {
	y, ok := p.diskLabel()
	if !ok || p.ctx.Disk.Bounds != nil {
		return nil, 0, false
	}
	return diskFeatures(&p.ctx, float64(p.ex.Option.Resources.EphemeralStorageBytes), nil), y, true
}

// gpuLabel labels a GPU setup as enough or not (a GPU out-of-memory).
func (p *prepared) gpuLabel() (float64, bool) {
	switch {
	case p.ex.Option.Resources.GPU == 0:
		return 0, false
	case p.ex.Outcome.Succeeded:
		return 1, true
	case p.ex.Result == failure.OOMGPU:
		return 0, true
	}
	return 0, false
}

// gpuBounded reports whether the bounds, not the GPU model, give the chance of the
// retry's GPU setup.
func (p *prepared) gpuBounded() bool {
	return p.ctx.GPUBounds != nil && p.ex.Option.Resources.GPU == p.ctx.Failed.GPU
}

// gpuExample is the GPU model's example, as memoryExample is memory's.
func (p *prepared) gpuExample() ([]float64, float64, bool) {
	y, ok := p.gpuLabel()
	if !ok || p.gpuBounded() {
		return nil, 0, false
	}
	return gpuFeatureVec(&p.ctx, p.ex.Option.Resources, p.tu, p.cap, nil), y, true
}

func (p *prepared) deadlineExample() ([]float64, float64, bool) {
	if p.ctx.Deadline == 0 {
		return nil, 0, false
	}
	deadline := p.ex.Option.DeadlineSeconds
	if deadline == 0 {
		deadline = p.ctx.Deadline
	}
	x := deadlineFeatureVec(&p.ctx, deadline, p.ctx.Runtime, nil)
	switch {
	case p.ex.Outcome.Succeeded:
		return x, 1, true
	case p.ex.Result == failure.Timeout:
		return x, 0, true
	}
	return nil, 0, false
}

// runtimeExample pairs the change of configuration with the log ratio of the
// runtime, for successful retries whose failed configuration's runtime is known.
func (p *prepared) runtimeExample() ([]float64, float64, bool) {
	if p.runtime == 0 || !p.ctx.RuntimeKnown {
		return nil, 0, false
	}
	x := runtimeFeatureVec(&p.ctx, p.ex.Option.Resources, p.tu, p.cat, nil)
	return x, math.Log(p.runtime / p.ctx.Runtime), true
}

func (m *Models) evaluate(train, test []*prepared, cat *failure.Catalogue) *Evaluation {
	e := &Evaluation{TrainExamples: len(train), TestExamples: len(test)}
	score := func(model *Logistic, sel func(*prepared) ([]float64, float64, bool)) Calibration {
		var ps, ys []float64
		for _, p := range test {
			if x, y, ok := sel(p); ok {
				ps, ys = append(ps, model.Predict(x)), append(ys, y)
			}
		}
		return calibrate(ps, ys)
	}
	e.Deadline = score(m.Deadline, (*prepared).deadlineExample)
	var ps, ys []float64
	var errs []float64
	var chances [3]struct{ ps, ys []float64 } // memory, local storage, GPU memory
	var bounded struct{ ps, ys []float64 }
	s := &Scratch{}
	for _, p := range test {
		pred := m.Predict(&p.ctx, &p.ex.Option, cat, s)
		for i, r := range []struct {
			p       float64
			label   func() (float64, bool)
			bounded bool
		}{
			{pred.PMemory, p.memoryLabel, p.ctx.MemBounds != nil},
			{pred.PDisk, p.diskLabel, p.ctx.Disk.Bounds != nil},
			{pred.PGPU, p.gpuLabel, p.gpuBounded()},
		} {
			if y, ok := r.label(); ok {
				chances[i].ps, chances[i].ys = append(chances[i].ps, r.p), append(chances[i].ys, y)
				if r.bounded {
					bounded.ps, bounded.ys = append(bounded.ps, r.p), append(bounded.ys, y)
				}
			}
		}
		y := 0.0
		if p.ex.Outcome.Succeeded {
			y = 1
		}
		ps, ys = append(ps, pred.PSuccess), append(ys, y)
		if p.runtime > 0 && (p.ctx.RuntimeKnown || len(p.ctx.RuntimeRuns) > 0) {
			errs = append(errs, math.Abs(pred.RuntimeSeconds-p.runtime)/p.runtime)
		}
	}
	e.Success = calibrate(ps, ys)
	e.Memory = calibrate(chances[0].ps, chances[0].ys)
	e.Disk = calibrate(chances[1].ps, chances[1].ys)
	e.GPU = calibrate(chances[2].ps, chances[2].ys)
	e.Bounds = calibrate(bounded.ps, bounded.ys)
	e.RuntimeN = len(errs)
	if len(errs) > 0 {
		e.RuntimeMAE = mean(errs)
	}
	return e
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
