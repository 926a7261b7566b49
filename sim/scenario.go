package sim

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"math"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/autofix/autofix/failure"
)

// Scenario describes a simulated workload. Sizes are GiB, runtimes hours, rates
// probabilities per run or per attempt as each field says.
type Scenario struct {
	Name string `yaml:"name"`
	Seed uint64 `yaml:"seed"`
	// Jobs is the number of runs in all; Templates the number of recurring jobs they
	// are runs of.
	Jobs      int `yaml:"jobs"`
	Templates int `yaml:"templates"`
	// RetryBudget is the most retries a policy may make for one failed run.
	RetryBudget int `yaml:"retryBudget"`
	// Kinds is the mix of job kinds (weights).
	Kinds map[failure.JobKind]float64 `yaml:"kinds"`
	// GPUShare is, per kind, the share of templates that use GPUs.
	GPUShare map[failure.JobKind]float64 `yaml:"gpuShare"`
	// Memory is, per kind, the true host-memory need of a template's first run, GiB.
	Memory map[failure.JobKind]LogNormal `yaml:"memory"`
	// GPUMemory is the true per-GPU memory need of a GPU template at its configured
	// tunables, as a fraction of the memory of its GPU type (below 1 fits).
	GPUMemory LogNormal `yaml:"gpuMemory"`
	// RequestFactor is how a template's memory request relates to its true need at
	// the first run (request = need x factor; below 1 is under-provisioned).
	RequestFactor LogNormal `yaml:"requestFactor"`
	// Disk is the true local-storage (ephemeral) need of a template's first run, GiB;
	// it grows with the memory need. A zero median leaves local storage out.
	Disk LogNormal `yaml:"disk"`
	// DiskLimitShare is the share of templates that set an ephemeral-storage limit
	// (the others are never evicted for exceeding one), and DiskRequestFactor that
	// limit over the need at the first run.
	DiskLimitShare    float64   `yaml:"diskLimitShare"`
	DiskRequestFactor LogNormal `yaml:"diskRequestFactor"`
	// CPU is the cores a template requests.
	CPU LogNormal `yaml:"cpu"`
	// GPUTypes and GPUCounts are what GPU templates use (weights).
	GPUTypes  []Weighted[string] `yaml:"gpuTypes"`
	GPUCounts []Weighted[int]    `yaml:"gpuCounts"`
	// Runtime is a template's runtime at its own configuration, hours, and
	// MaxRuntimeHours its cap (0: none).
	Runtime         LogNormal `yaml:"runtimeHours"`
	MaxRuntimeHours float64   `yaml:"maxRuntimeHours"`
	// DeadlineMargin is activeDeadlineSeconds over the template's runtime.
	DeadlineMargin LogNormal `yaml:"deadlineMargin"`
	// Drift is the growth of a template's needs from one run to the next, as the
	// median and spread of the per-run log-growth (0.01 is +1% a run).
	Drift LogNormal `yaml:"drift"`
	// Noise is the run-to-run variation of the needs (sigma of a lognormal around 1).
	Noise float64 `yaml:"noise"`
	// Failures are the rates of failures resources do not explain.
	Failures Failures `yaml:"failures"`
	// Cluster bounds what any run can get.
	Cluster Cluster `yaml:"cluster"`
	// Catalogue prices resources and lists the GPU models.
	Catalogue failure.Catalogue `yaml:"catalogue"`
	// Text is where failures' text comes from: "rendered" (the default when empty)
	// by the simulator, or "real", labelled messages of each failure's category.
	Text Text `yaml:"text"`
	// Telemetry is what the cluster measures of the runs' usage: "all" (the default
	// when empty: peaks on every failure and outcome), "failures" (only what a
	// cluster without metrics shows: the limit of an OOMKilled run, the kubelet's
	// figure on an eviction) or "none".
	Telemetry Telemetry `yaml:"telemetry"`
}

// LogNormal is a lognormal distribution by its median and the sigma of its log.
type LogNormal struct {
	Median float64 `yaml:"median"`
	Sigma  float64 `yaml:"sigma"`
}

// Weighted is a value and its weight in a mix.
type Weighted[T any] struct {
	Value  T       `yaml:"value"`
	Weight float64 `yaml:"weight"`
}

// Failures are the rates of the failures resources do not explain, for GPU and CPU
// jobs, and how preemptible capacity and bad nodes behave.
type Failures struct {
	GPU FailureRates `yaml:"gpu"`
	CPU FailureRates `yaml:"cpu"`
	// SpotShare is, per kind, the share of templates that run on spot capacity, and
	// SpotPreemptedPerHour the hazard of losing a spot node, per node-hour.
	SpotShare            map[failure.JobKind]float64 `yaml:"spotShare"`
	SpotPreemptedPerHour float64                     `yaml:"spotPreemptedPerHour"`
	// BadNodeStickiness is the chance a retry that does not avoid a node whose
	// hardware failed lands on it again.
	BadNodeStickiness float64 `yaml:"badNodeStickiness"`
}

// FailureRates are the failure rates of one class of jobs. Transient strikes an
// attempt; UserCode, Data and Config strike a run and every retry of it; hardware and
// preemption are hazards per hour of running.
type FailureRates struct {
	Transient float64 `yaml:"transient"`
	UserCode  float64 `yaml:"userCode"`
	Data      float64 `yaml:"data"`
	Config    float64 `yaml:"config"`
	// HardwarePerGPUHour and HardwarePerNodeHour are hazards of a hardware fault.
	HardwarePerGPUHour  float64 `yaml:"hardwarePerGPUHour"`
	HardwarePerNodeHour float64 `yaml:"hardwarePerNodeHour"`
	// PreemptedPerHour is the hazard of losing on-demand capacity, per node-hour.
	PreemptedPerHour float64 `yaml:"preemptedPerHour"`
}

// Cluster is the largest node: no run can get more.
type Cluster struct {
	MaxMemoryGiB float64 `yaml:"maxMemoryGiB"`
	MaxCPU       float64 `yaml:"maxCPU"`
	MaxGPUs      int     `yaml:"maxGPUs"`
	// MaxEphemeralGiB is the local storage a pod can get.
	MaxEphemeralGiB float64 `yaml:"maxEphemeralStorageGiB"`
}

//go:embed scenarios/*.yaml
var scenarioFS embed.FS

// Scenarios lists the scenarios that ship with autofix, by name.
func Scenarios() []string {
	entries, _ := scenarioFS.ReadDir("scenarios")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name()[:len(e.Name())-len(".yaml")])
	}
	return names
}

// Builtin returns a scenario that ships with autofix ("default", ...).
func Builtin(name string) (*Scenario, error) {
	data, err := scenarioFS.ReadFile("scenarios/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in scenario %q (have %v)", name, Scenarios())
	}
	return ParseScenario(data)
}

// LoadScenario reads a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseScenario decodes a scenario strictly (unknown fields are errors) and validates it.
func ParseScenario(data []byte) (*Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks every field and names the first one that is wrong.
func (s *Scenario) Validate() error {
	var errs []error
	check := func(ok bool, field, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
		}
	}
	check(s.Jobs > 0 && s.Jobs <= 10_000_000, "jobs", "want 1 to 10000000, got %d", s.Jobs)
	check(s.Templates > 0 && s.Templates <= s.Jobs, "templates", "want 1 to jobs (%d), got %d", s.Jobs, s.Templates)
	check(s.RetryBudget >= 1 && s.RetryBudget <= 10, "retryBudget", "want 1 to 10, got %d", s.RetryBudget)
	total := 0.0
	for k, w := range s.Kinds {
		check(k.Valid(), "kinds", "unknown kind %q", k)
		check(w >= 0, "kinds."+string(k), "weight must not be negative")
		total += w
	}
	check(total > 0, "kinds", "want at least one positive weight")
	for k := range s.Kinds {
		if s.Kinds[k] > 0 {
			d, ok := s.Memory[k]
			check(ok, "memory."+string(k), "required for a kind in the mix")
			check(d.valid(), "memory."+string(k), "want median > 0 and sigma >= 0")
			share := s.GPUShare[k]
			check(share >= 0 && share <= 1, "gpuShare."+string(k), "want 0 to 1, got %v", share)
		}
	}
	check(s.GPUMemory.valid(), "gpuMemory", "want median > 0 and sigma >= 0")
	check(s.RequestFactor.valid(), "requestFactor", "want median > 0 and sigma >= 0")
	check(s.CPU.valid(), "cpu", "want median > 0 and sigma >= 0")
	if s.Disk != (LogNormal{}) {
		check(s.Disk.valid(), "disk", "want median > 0 and sigma >= 0")
		check(s.DiskRequestFactor.valid(), "diskRequestFactor", "want median > 0 and sigma >= 0")
		check(s.DiskLimitShare >= 0 && s.DiskLimitShare <= 1, "diskLimitShare", "want 0 to 1, got %v", s.DiskLimitShare)
		check(s.Cluster.MaxEphemeralGiB > 0, "cluster.maxEphemeralStorageGiB", "want a positive size with disk")
	}
	check(s.Runtime.valid(), "runtimeHours", "want median > 0 and sigma >= 0")
	check(s.DeadlineMargin.valid() && s.DeadlineMargin.Median >= 1, "deadlineMargin", "want median >= 1 and sigma >= 0")
	check(s.Drift.Sigma >= 0 && math.Abs(s.Drift.Median) < 0.5, "drift", "want |median| < 0.5 and sigma >= 0")
	check(s.Noise >= 0 && s.Noise < 1, "noise", "want 0 to 1, got %v", s.Noise)
	if s.Text != "" {
		_, err := ParseText(string(s.Text))
		check(err == nil, "text", "%v", err)
	}
	if s.Telemetry != "" {
		_, err := ParseTelemetry(string(s.Telemetry))
		check(err == nil, "telemetry", "%v", err)
	}
	check(s.MaxRuntimeHours >= 0, "maxRuntimeHours", "must not be negative")
	f := s.Failures
	for _, class := range []struct {
		name  string
		rates FailureRates
	}{{"gpu", f.GPU}, {"cpu", f.CPU}} {
		r := class.rates
		for _, v := range []struct {
			name string
			v    float64
		}{{"transient", r.Transient}, {"userCode", r.UserCode}, {"data", r.Data}, {"config", r.Config}} {
			check(v.v >= 0 && v.v <= 1, "failures."+class.name+"."+v.name, "want 0 to 1, got %v", v.v)
		}
		check(r.UserCode+r.Data+r.Config <= 1, "failures."+class.name, "userCode + data + config must not exceed 1")
		check(r.HardwarePerGPUHour >= 0 && r.HardwarePerNodeHour >= 0 && r.PreemptedPerHour >= 0,
			"failures."+class.name, "hazards must not be negative")
	}
	check(f.BadNodeStickiness >= 0 && f.BadNodeStickiness <= 1, "failures.badNodeStickiness", "want 0 to 1, got %v", f.BadNodeStickiness)
	check(f.SpotPreemptedPerHour >= 0, "failures.spotPreemptedPerHour", "must not be negative")
	for k, v := range f.SpotShare {
		check(k.Valid() && v >= 0 && v <= 1, "failures.spotShare."+string(k), "want a kind and a share from 0 to 1")
	}
	check(s.Cluster.MaxMemoryGiB > 0 && s.Cluster.MaxCPU > 0 && s.Cluster.MaxGPUs >= 0, "cluster", "want positive maxMemoryGiB and maxCPU")
	if err := s.Catalogue.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("catalogue: %w", err))
	}
	gpuUsed := false
	for k, share := range s.GPUShare {
		gpuUsed = gpuUsed || (share > 0 && s.Kinds[k] > 0)
	}
	if gpuUsed {
		check(len(s.GPUTypes) > 0, "gpuTypes", "required when some kind uses GPUs")
		check(len(s.GPUCounts) > 0, "gpuCounts", "required when some kind uses GPUs")
	}
	for i, t := range s.GPUTypes {
		_, ok := s.Catalogue.GPU(t.Value)
		check(ok, fmt.Sprintf("gpuTypes[%d]", i), "%q is not in the catalogue", t.Value)
		check(t.Weight >= 0, fmt.Sprintf("gpuTypes[%d].weight", i), "must not be negative")
	}
	for i, c := range s.GPUCounts {
		check(c.Value >= 1 && c.Value <= s.Cluster.MaxGPUs, fmt.Sprintf("gpuCounts[%d]", i), "want 1 to cluster.maxGPUs (%d), got %d", s.Cluster.MaxGPUs, c.Value)
		check(c.Weight >= 0, fmt.Sprintf("gpuCounts[%d].weight", i), "must not be negative")
	}
	return errors.Join(errs...)
}

// TextSource is where the scenario's failure text comes from: Text, or TextRendered
// when it is not set.
func (s *Scenario) TextSource() Text {
	if s.Text == "" {
		return TextRendered
	}
	return s.Text
}

func (d LogNormal) valid() bool { return d.Median > 0 && d.Sigma >= 0 }
