package failure

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Catalogue prices resources and lists the GPU models a cluster offers. The cost of a
// run is its runtime times the hourly price of its resources (DESIGN.md, "Costs").
type Catalogue struct {
	// CPUPerCoreHour is dollars per core-hour.
	CPUPerCoreHour float64 `json:"cpuPerCoreHour" yaml:"cpuPerCoreHour"`
	// MemoryPerGiBHour is dollars per GiB-hour.
	MemoryPerGiBHour float64 `json:"memoryPerGiBHour" yaml:"memoryPerGiBHour"`
	// EphemeralPerGiBHour is dollars per GiB-hour of local (ephemeral) storage.
	EphemeralPerGiBHour float64 `json:"ephemeralPerGiBHour,omitempty" yaml:"ephemeralPerGiBHour,omitempty"`
	// GPUs are the GPU models on offer.
	GPUs []GPUModel `json:"gpus" yaml:"gpus"`
}

// GPUModel is a GPU type with its memory and price.
type GPUModel struct {
	// Name is the type as jobs request it (node label value), e.g. "nvidia-a100-80gb".
	Name string `json:"name" yaml:"name"`
	// MemoryGiB is the memory of one GPU, in GiB.
	MemoryGiB float64 `json:"memoryGiB" yaml:"memoryGiB"`
	// PerHour is dollars per GPU-hour.
	PerHour float64 `json:"perHour" yaml:"perHour"`
	// RelativeSpeed is the model's training throughput relative to an A100 (benchmark
	// figures); 0 means unknown, taken as 1.
	RelativeSpeed float64 `json:"relativeSpeed,omitempty" yaml:"relativeSpeed,omitempty"`
}

// Speed returns the relative throughput of the named GPU type, 1 if unknown.
func (c Catalogue) Speed(name string) float64 {
	if g, ok := c.GPU(name); ok && g.RelativeSpeed > 0 {
		return g.RelativeSpeed
	}
	return 1
}

// DefaultCatalogue holds illustrative on-demand list prices of a public cloud in 2025
// (docs/workload-model.md gives the sources); deployments configure their own.
func DefaultCatalogue() Catalogue {
	return Catalogue{
		CPUPerCoreHour:      0.0316,
		MemoryPerGiBHour:    0.0042,
		EphemeralPerGiBHour: 0.00014,
		GPUs: []GPUModel{
			{Name: "nvidia-tesla-t4", MemoryGiB: 16, PerHour: 0.35, RelativeSpeed: 0.25},
			{Name: "nvidia-l4", MemoryGiB: 24, PerHour: 0.71, RelativeSpeed: 0.4},
			{Name: "nvidia-a100-40gb", MemoryGiB: 40, PerHour: 2.93, RelativeSpeed: 1},
			{Name: "nvidia-a100-80gb", MemoryGiB: 80, PerHour: 3.93, RelativeSpeed: 1.05},
			{Name: "nvidia-h100-80gb", MemoryGiB: 80, PerHour: 9.80, RelativeSpeed: 2.2},
		},
	}
}

// Validate checks that prices (and speeds) are finite and not negative, and GPU models
// named, sized and unique.
func (c Catalogue) Validate() error {
	// NaN and infinities (YAML's .nan, .inf) pass a sign check and make every cost,
	// and so every cost multiple, NaN or infinite.
	priced := func(x float64) bool { return x >= 0 && !math.IsInf(x, 1) }
	switch {
	case !priced(c.CPUPerCoreHour):
		return fmt.Errorf("cpuPerCoreHour: must be a finite number, not negative")
	case !priced(c.MemoryPerGiBHour):
		return fmt.Errorf("memoryPerGiBHour: must be a finite number, not negative")
	case !priced(c.EphemeralPerGiBHour):
		return fmt.Errorf("ephemeralPerGiBHour: must be a finite number, not negative")
	}
	seen := map[string]bool{}
	for i, g := range c.GPUs {
		switch {
		case g.Name == "":
			return fmt.Errorf("gpus[%d].name: required", i)
		case seen[g.Name]:
			return fmt.Errorf("gpus[%d].name: %q listed twice", i, g.Name)
		case !(g.MemoryGiB > 0 && priced(g.MemoryGiB)):
			return fmt.Errorf("gpus[%d].memoryGiB: must be a finite positive number", i)
		case !priced(g.PerHour):
			return fmt.Errorf("gpus[%d].perHour: must be a finite number, not negative", i)
		case !priced(g.RelativeSpeed):
			return fmt.Errorf("gpus[%d].relativeSpeed: must be a finite number, not negative", i)
		}
		seen[g.Name] = true
	}
	return nil
}

// GPU returns the model named name (case-insensitively).
func (c Catalogue) GPU(name string) (GPUModel, bool) {
	for _, g := range c.GPUs { // exact names first: the common case, and cheap
		if g.Name == name {
			return g, true
		}
	}
	i := slices.IndexFunc(c.GPUs, func(g GPUModel) bool { return strings.EqualFold(g.Name, name) })
	if i < 0 {
		return GPUModel{}, false
	}
	return c.GPUs[i], true
}

// GPUMemory returns the memory of one GPU of the named type in bytes: from the
// catalogue, else from the name (GPUMemoryBytes), else 0.
func (c Catalogue) GPUMemory(name string) int64 {
	if g, ok := c.GPU(name); ok {
		return int64(g.MemoryGiB * (1 << 30))
	}
	return GPUMemoryBytes(name)
}

// HourlyCost returns what resources r cost per hour, in dollars. GPUs of a type the
// catalogue does not list cost nothing, so that an unknown type never looks cheap by
// accident in comparisons it takes part in: configure every type in use.
func (c Catalogue) HourlyCost(r Resources) float64 {
	cost := float64(r.CPUMillis)/1000*c.CPUPerCoreHour + float64(r.MemoryBytes)/(1<<30)*c.MemoryPerGiBHour +
		float64(r.EphemeralStorageBytes)/(1<<30)*c.EphemeralPerGiBHour
	if r.GPU > 0 {
		if g, ok := c.GPU(r.GPUType); ok {
			cost += float64(r.GPU) * g.PerHour
		}
	}
	return cost
}

// Cost returns what running r for seconds costs, in dollars.
func (c Catalogue) Cost(r Resources, seconds float64) float64 {
	return c.HourlyCost(r) * seconds / 3600
}
