package models

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/autofix/autofix/failure"
)

// ArtifactKind and ArtifactVersion identify the models' saved form.
const (
	ArtifactKind    = "autofix-retry-models"
	ArtifactVersion = 1
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
	GPU      *Logistic `json:"gpu"`
	Deadline *Logistic `json:"deadline"`
	Runtime  *Linear   `json:"runtime"`
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
		m.GPU == nil || len(m.GPU.Weights) != gpuFeatures,
		m.Deadline == nil || len(m.Deadline.Weights) != deadlineFeatures,
		m.Runtime == nil || len(m.Runtime.Weights) != runtimeFeatures:
		return nil, errors.New("read models: a model is missing or has the wrong number of weights")
	case m.Other < 0 || m.Other >= 1:
		return nil, fmt.Errorf("read models: other %v is not a probability", m.Other)
	}
	return &m, nil
}

// Save writes the models in their versioned JSON form.
func (m *Models) Save() ([]byte, error) { return json.MarshalIndent(m, "", " ") }

// Prediction is what the models expect of a retry with one candidate.
type Prediction struct {
	// PSuccess is the chance the retry succeeds; PMemory, PGPU and PDeadline are the
	// chances each resource is enough, and PFix the chance for the resource the
	// failure ran out of (PSuccess without the other risks when it ran out of none).
	PSuccess, PMemory, PGPU, PDeadline, PFix float64
	// RuntimeSeconds is the expected runtime of a successful retry; RunCost its cost
	// and ExpectedCost the cost expected of retrying with it, failure included.
	RuntimeSeconds, RunCost, ExpectedCost float64
}

// Scratch holds buffers for Predict; one per goroutine avoids allocation.
type Scratch struct{ x []float64 }

// Predict evaluates candidate opt for the failure described by c.
func (m *Models) Predict(c *Context, opt *failure.Option, cat *failure.Catalogue, s *Scratch) Prediction {
	if s == nil {
		s = &Scratch{}
	}
	var p Prediction
	res := opt.Resources
	tu := c.TunablesOf(opt.Params)
	s.x = memoryFeatures(c, float64(res.MemoryBytes), s.x)
	p.PMemory = m.Memory.Predict(s.x)
	p.PGPU = 1
	if res.GPU > 0 {
		s.x = gpuFeatureVec(c, res, tu, float64(cat.GPUMemory(res.GPUType)), s.x)
		p.PGPU = m.GPU.Predict(s.x)
	}
	s.x = runtimeFeatureVec(c, res, tu, cat, s.x)
	p.RuntimeSeconds = c.Runtime * math.Exp(m.Runtime.Predict(s.x))
	p.PDeadline = 1
	if c.Deadline > 0 {
		deadline := opt.DeadlineSeconds
		if deadline == 0 {
			deadline = c.Deadline
		}
		s.x = deadlineFeatureVec(c, deadline, p.RuntimeSeconds, s.x)
		p.PDeadline = m.Deadline.Predict(s.x)
	}
	p.PSuccess = p.PMemory * p.PGPU * p.PDeadline * (1 - m.Other)
	switch c.Category {
	case failure.OOMMemory:
		p.PFix = p.PMemory
	case failure.OOMGPU:
		p.PFix = p.PGPU
	case failure.Timeout:
		p.PFix = p.PDeadline
	default:
		p.PFix = p.PSuccess / (1 - m.Other)
	}
	p.RunCost = cat.Cost(res, p.RuntimeSeconds)
	failAt := m.FailAt[c.Category]
	if failAt == 0 {
		failAt = 0.5
	}
	// A failed retry costs the share of the run it got through, and the retry after
	// it a run that (nearly always) succeeds.
	p.ExpectedCost = p.PSuccess*p.RunCost + (1-p.PSuccess)*(failAt*p.RunCost+1.1*p.RunCost)
	return p
}
