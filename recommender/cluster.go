package recommender

import (
	"slices"
	"strings"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
)

// Cluster is what the cluster's nodes offer. It changes as nodes come and go
// (SetCluster); recommendations made after a change see it.
type Cluster struct {
	// Largest is the largest node: the most allocatable memory, CPU, local storage and
	// GPUs any node has (each the largest of its own; zero fields do not limit).
	Largest failure.Resources
	// GPUTypes are the GPU models the nodes carry (by the GPU-model node label). Nil:
	// not known, and every model of the catalogue may be proposed. Otherwise only the
	// catalogue's models among them are: a model no node has cannot be scheduled, and
	// one the catalogue does not price cannot be compared.
	GPUTypes []string
}

// view is a Cluster as a recommendation uses it.
type view struct {
	largest  failure.Resources
	gpuTypes []string // the catalogue's models on offer; nil: the failed run's only
}

// SetCluster replaces what the recommender knows of the cluster's nodes. Safe to call
// while recommendations are being made.
func (r *Recommender) SetCluster(c Cluster) {
	v := &view{largest: c.Largest}
	for _, g := range r.opts.Catalogue.GPUs {
		if c.GPUTypes == nil || slices.ContainsFunc(c.GPUTypes, func(t string) bool { return strings.EqualFold(t, g.Name) }) {
			v.gpuTypes = append(v.gpuTypes, g.Name)
		}
	}
	r.cluster.Store(v)
}

// Cluster returns what the recommender knows of the cluster's nodes: the largest
// node, and the GPU models it may propose.
func (r *Recommender) Cluster() Cluster {
	v := r.cluster.Load()
	return Cluster{Largest: v.largest, GPUTypes: slices.Clone(v.gpuTypes)}
}

// Catalogue is the price list the recommender costs options with.
func (r *Recommender) Catalogue() failure.Catalogue { return r.opts.Catalogue }

// MaxCostMultiple is the cap on a retry's run cost, as a multiple of the failed run's.
func (r *Recommender) MaxCostMultiple() float64 { return r.opts.MaxCostMultiple }

// SetModels replaces the models that predict what a retry will do with models not
// from the registry (version 0); recommendations begun before keep the models they
// started with. Safe to call while recommendations are being made.
func (r *Recommender) SetModels(m *models.Models) { r.SetVersion(0, m) }

// SetVersion replaces the models with version of the model registry, which each
// recommendation then names (ModelRegistryVersion).
func (r *Recommender) SetVersion(version int, m *models.Models) {
	r.models.Store(&versioned{version: version, m: m})
}

// Models returns the models in use.
func (r *Recommender) Models() *models.Models { return r.models.Load().m }
