package models

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"

	"github.com/autofix/autofix/failure"
)

// ArtifactKind and ArtifactVersion identify the models' saved form.
const (
	ArtifactKind    = "autofix-retry-models"
	ArtifactVersion = 2
)

// Models predict whether a retry with a candidate configuration succeeds, and how
// long and how much it runs. They are immutable once trained or loaded.
type Models struct {
	Kind    string `json:"kind"`
	Version int    `json:"version"`
	// Name identifies this training (scenario, seed, data) in recommendations.
	Name string `json:"name"`
	// Memory, GPU and Deadline give the chance that the candidate's memory, GPU setup
	// and deadline are enough; Runtime the log ratio of its runtime to the failed one's.
	Memory   *Logistic `json:"memory"`
	Disk     *Logistic `json:"disk"`
	GPU      *Logistic `json:"gpu"`
	Deadline *Logistic `json:"deadline"`
	Runtime  *Linear   `json:"runtime"`
	// Success recalibrates P(success), the product of the per-resource chances and
	// the other risks, which are not independent: P = sigmoid(w0 + w1 logit(product)).
	// Absent, the product stands.
	Success *Logistic `json:"success,omitempty"`
	// Other is the chance an attempt fails for reasons resources do not explain
	// (a transient error, a preemption, a hardware fault).
	Other float64 `json:"other"`
	// FailAt is the share of its runtime a failed retry runs before it fails, by
	// the category of the failure being fixed.
	FailAt map[failure.Category]float64 `json:"failAt"`
	// Evaluation is how the models scored on data held out from their training.
	Evaluation *Evaluation `json:"evaluation,omitempty"`
}

//go:embed default.json
var defaultArtifact []byte

// Default returns the models trained on the default scenario that ship with autofix.
func Default() (*Models, error) { return Load(defaultArtifact) }

// DefaultArtifact returns the saved form of the default models, as embedded.
func DefaultArtifact() []byte { return bytes.Clone(defaultArtifact) }

// Load reads models saved with Save.
func Load(data []byte) (*Models, error) {
	var m Models
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read models: %w", err)
	}
	switch {
	case m.Kind != ArtifactKind:
		return nil, fmt.Errorf("read models: kind %q, want %q", m.Kind, ArtifactKind)
	case m.Version != ArtifactVersion:
		return nil, fmt.Errorf("read models: version %d, this autofix reads version %d", m.Version, ArtifactVersion)
	case m.Memory == nil || len(m.Memory.Weights) != memFeatures,
		m.Disk == nil || len(m.Disk.Weights) != memFeatures,
		m.GPU == nil || len(m.GPU.Weights) != gpuFeatures,
		m.Deadline == nil || len(m.Deadline.Weights) != deadlineFeatures,
		m.Runtime == nil || len(m.Runtime.Weights) != runtimeFeatures:
		return nil, errors.New("read models: a model is missing or has the wrong number of weights")
	case m.Other < 0 || m.Other >= 1:
		return nil, fmt.Errorf("read models: other %v is not a probability", m.Other)
	}
	if m.Success != nil && len(m.Success.Weights) != 2 {
		return nil, errors.New("read models: success must have 2 weights")
	}
	weights := map[string][]float64{"memory": m.Memory.Weights, "disk": m.Disk.Weights, "gpu": m.GPU.Weights,
		"deadline": m.Deadline.Weights, "runtime": m.Runtime.Weights}
	if m.Success != nil {
		weights["success"] = m.Success.Weights
	}
	for name, w := range weights {
		for i, v := range w {
			if !(math.Abs(v) <= maxWeight) {
				return nil, fmt.Errorf("read models: %s.weights[%d] = %v, want a number within ±%v", name, i, v, maxWeight)
			}
		}
	}
	for cat, v := range m.FailAt {
		if !(v >= 0 && v <= 1) {
			return nil, fmt.Errorf("read models: failAt.%s = %v, want 0 to 1", cat, v)
		}
	}
	return &m, nil
}

// maxWeight bounds the weights Load accepts: trained ones stay below 10 (the features
// are logs and ratios), and far larger ones would overflow the predictions.
const maxWeight = 1000

// Save writes the models in their versioned JSON form.
func (m *Models) Save() ([]byte, error) { return json.MarshalIndent(m, "", " ") }

// Prediction is what the models expect of a retry with one candidate.
type Prediction struct {
	// PSuccess is the chance the retry succeeds; PMemory, PDisk, PGPU and PDeadline
	// are the chances each resource is enough, and PFix the chance for the resource
	// the failure ran out of (their product when it ran out of none).
	PSuccess, PMemory, PDisk, PGPU, PDeadline, PFix float64
	// RuntimeSeconds is the expected runtime of a successful retry; RunCost its cost
	// and ExpectedCost the cost expected of retrying with it, failure included.
	RuntimeSeconds, RunCost, ExpectedCost float64
}

// Scratch holds buffers for Predict; one per goroutine avoids allocation. It also
// remembers, for the last context, the predictions for the last GPU setup and for
// each memory size: the optimizer hands over many candidates that differ only in
// memory, and the same memory steps for every setup.
type Scratch struct {
	x     []float64
	key   setupKey
	setup setupPrediction
	// memCtx is the context pMemory and pDisk hold predictions for (0: none).
	memCtx  uint64
	pMemory map[int64]float64
	pDisk   map[int64]float64
	// baseCtx is the context baseRuntime was computed for (0: none).
	baseCtx     uint64
	baseRuntime float64
	// tuKey is the context and parameter map tu was read from.
	tuKey struct {
		ctx    uint64
		params uintptr
	}
	tu Tunables
}

// setupKey identifies a context and a candidate's setup apart from its memory.
type setupKey struct {
	ctx      uint64
	params   uintptr
	gpu      int
	gpuType  string
	cpu      int64
	deadline float64
}

// setupPrediction is what a setup, apart from its memory, predicts.
type setupPrediction struct {
	pGPU, pDeadline, runtime float64
	// hourly is the price per hour of everything but the memory and local storage.
	hourly float64
}

// predictSetup predicts what depends on a candidate's setup but not its memory; s.key
// is already the setup's key.
func (m *Models) predictSetup(c *Context, opt *failure.Option, cat *failure.Catalogue, s *Scratch) setupPrediction {
	res := opt.Resources
	if c.id == 0 || s.tuKey.ctx != c.id || s.tuKey.params != s.key.params {
		s.tuKey.ctx, s.tuKey.params = c.id, s.key.params
		s.tu = c.TunablesOf(opt.Params)
	}
	tu := s.tu
	sp := setupPrediction{pGPU: 1, pDeadline: 1}
	if res.GPU > 0 {
		capacity := float64(cat.GPUMemory(res.GPUType))
		if c.GPUBounds != nil && res.GPU == c.Failed.GPU {
			// No peak measured: the chance the bounds give the need at these
			// tunables, carried over from the failed ones. (Another GPU count may
			// shard the memory: the model, which learned how often it does, says.)
			sp.pGPU = c.GPUBounds.P(capacity * usableGPU / gpuScale(c.Tun, tu))
		} else {
			s.x = gpuFeatureVec(c, res, tu, capacity, s.x)
			sp.pGPU = m.GPU.Predict(s.x)
		}
	}
	s.x = runtimeFeatureVec(c, res, tu, cat, s.x)
	if c.id == 0 || s.baseCtx != c.id {
		s.baseCtx, s.baseRuntime = c.id, m.baseRuntime(c, cat, s)
		s.x = runtimeFeatureVec(c, res, tu, cat, s.x) // baseRuntime used the buffer
	}
	sp.runtime = s.baseRuntime * math.Exp(m.Runtime.Predict(s.x))
	if c.Deadline > 0 {
		deadline := opt.DeadlineSeconds
		if deadline == 0 {
			deadline = c.Deadline
		}
		s.x = deadlineFeatureVec(c, deadline, sp.runtime, s.x)
		sp.pDeadline = m.Deadline.Predict(s.x)
	}
	rest := res // the price of what the setup holds: memory and local storage vary within it
	rest.MemoryBytes, rest.EphemeralStorageBytes = 0, 0
	sp.hourly = cat.HourlyCost(rest)
	return sp
}

// Predict evaluates candidate opt for the failure described by c.
func (m *Models) Predict(c *Context, opt *failure.Option, cat *failure.Catalogue, s *Scratch) Prediction {
	if s == nil {
		s = &Scratch{}
	}
	var p Prediction
	res := opt.Resources
	p.PMemory = m.predictMemory(c, res.MemoryBytes, s)
	p.PDisk = 1 // without a limit, local storage does not fail a run
	if res.EphemeralStorageBytes > 0 {
		p.PDisk = m.predictDisk(c, res.EphemeralStorageBytes, s)
	}

	// What depends on the GPU setup and the deadline, not on the memory, is the same
	// for the runs of candidates the optimizer hands over with one parameter map.
	key := setupKey{ctx: c.id, params: reflect.ValueOf(opt.Params).Pointer(), gpu: res.GPU, gpuType: res.GPUType,
		cpu: res.CPUMillis, deadline: opt.DeadlineSeconds}
	if c.id == 0 || key != s.key {
		s.key = key
		s.setup = m.predictSetup(c, opt, cat, s)
	}
	p.PGPU, p.RuntimeSeconds, p.PDeadline = s.setup.pGPU, s.setup.runtime, s.setup.pDeadline
	product := p.PMemory * p.PDisk * p.PGPU * p.PDeadline
	switch c.Category {
	case failure.OOMMemory:
		p.PFix = p.PMemory
	case failure.DiskFull:
		p.PFix = p.PDisk
	case failure.OOMGPU:
		p.PFix = p.PGPU
	case failure.Timeout:
		p.PFix = p.PDeadline
	default:
		p.PFix = product
	}
	p.PSuccess = m.successOf(product * (1 - m.Other))
	p.RunCost = (s.setup.hourly + float64(res.MemoryBytes)/(1<<30)*cat.MemoryPerGiBHour +
		float64(res.EphemeralStorageBytes)/(1<<30)*cat.EphemeralPerGiBHour) * p.RuntimeSeconds / 3600
	failAt := m.FailAt[c.Category]
	if failAt == 0 {
		failAt = 0.5
	}
	// A failed retry costs the share of the run it got through, and the retry after
	// it a run that (nearly always) succeeds.
	p.ExpectedCost = p.PSuccess*p.RunCost + (1-p.PSuccess)*(failAt*p.RunCost+1.1*p.RunCost)
	return p
}

// successOf recalibrates the product of the chances of success.
func (m *Models) successOf(product float64) float64 {
	if m.Success == nil {
		return product
	}
	q := clamp(product, 1e-6, 1-1e-6)
	w := m.Success.Weights // [intercept, slope]: Load checked there are two
	return sigmoid(w[0] + w[1]*math.Log(q/(1-q)))
}

// predictMemory is the chance that memory bytes are enough, remembered per context:
// without peaks, the chance the bounds of the template's runs give it; else the
// memory model's.
func (m *Models) predictMemory(c *Context, bytes int64, s *Scratch) float64 {
	return s.remember(c, &s.pMemory, bytes, func() float64 {
		if c.MemBounds != nil {
			return c.MemBounds.P(float64(bytes))
		}
		s.x = memoryFeatures(c, float64(bytes), s.x)
		return m.Memory.Predict(s.x)
	})
}

// predictDisk is the chance that an ephemeral-storage limit of bytes is enough, as
// predictMemory is for memory.
func (m *Models) predictDisk(c *Context, bytes int64, s *Scratch) float64 {
	return s.remember(c, &s.pDisk, bytes, func() float64 {
		if c.Disk.Bounds != nil {
			return c.Disk.Bounds.P(float64(bytes))
		}
		s.x = diskFeatures(c, float64(bytes), s.x)
		return m.Disk.Predict(s.x)
	})
}

// remember returns the prediction for size bytes held in *cache for context c, or
// computes and holds it; a new context empties the caches.
func (s *Scratch) remember(c *Context, cache *map[int64]float64, bytes int64, predict func() float64) float64 {
	if c.id == 0 {
		return predict()
	}
	if s.memCtx != c.id {
		clear(s.pMemory)
		clear(s.pDisk)
		s.memCtx = c.id
	}
	if *cache == nil {
		*cache = make(map[int64]float64, 64)
	}
	if p, ok := (*cache)[bytes]; ok {
		return p
	}
	p := predict()
	(*cache)[bytes] = p
	return p
}

// BaseRuntime is the expected runtime of the failed configuration, in seconds.
func (m *Models) BaseRuntime(c *Context, cat *failure.Catalogue) float64 {
	return m.baseRuntime(c, cat, &Scratch{})
}

// baseRuntime is the expected runtime of the failed configuration: from its own
// successful runs when there are some, else from the template's other successful runs
// carried over by the runtime model, else the guess the context made.
func (m *Models) baseRuntime(c *Context, cat *failure.Catalogue, s *Scratch) float64 {
	if c.RuntimeKnown || len(c.RuntimeRuns) == 0 {
		return c.Runtime
	}
	var sum float64
	for _, r := range c.RuntimeRuns {
		s.x = runtimeFeatureVec(c, r.Resources, r.Tun, cat, s.x)
		sum += math.Log(r.Seconds) - m.Runtime.Predict(s.x)
	}
	return math.Exp(sum / float64(len(c.RuntimeRuns)))
}
