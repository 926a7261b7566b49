package config

import (
	"fmt"

	"github.com/autofix/autofix/failure"
)

// Cluster is what autofix assumes of the cluster's nodes when it cannot see them,
// and whether it looks.
type Cluster struct {
	// Discover reads the nodes of the cluster autofix acts on (the real one, or the
	// simulated one) and keeps what they offer current as nodes come and go: the
	// largest allocatable memory, CPU, local storage and GPU count, and the GPU
	// models (kubernetes.gpuTypeLabel). On by default. Until the first node list,
	// and when it is off or there is no cluster, LargestNode holds.
	Discover bool `yaml:"discover"`
	// LargestNode bounds what one retry may ask for.
	LargestNode Node `yaml:"largestNode"`
	// NodePools are node shapes an autoscaler (cluster-autoscaler, Karpenter) can
	// add that may not exist now — a GPU pool scaled to zero: discovery sees only
	// the nodes there are, and what they offer is widened by these.
	NodePools []NodePool `yaml:"nodePools"`
}

// NodePool is a node shape an autoscaler can add, and its GPU model (the value of
// kubernetes.gpuTypeLabel its nodes carry).
type NodePool struct {
	Node     `yaml:",inline"`
	GPUModel string `yaml:"gpuModel"`
}

// Node is the size of a node. Zero fields do not limit.
type Node struct {
	MemoryGiB           float64 `yaml:"memoryGiB"`
	CPU                 float64 `yaml:"cpu"`
	GPUs                int     `yaml:"gpus"`
	EphemeralStorageGiB float64 `yaml:"ephemeralStorageGiB"`
}

// Resources is the node as a resource request.
func (n Node) Resources() failure.Resources {
	return failure.Resources{MemoryBytes: int64(n.MemoryGiB * (1 << 30)), CPUMillis: int64(n.CPU * 1000), GPU: n.GPUs,
		EphemeralStorageBytes: int64(n.EphemeralStorageGiB * (1 << 30))}
}

// Classifier configures the classification of failures.
type Classifier struct {
	// MinConfidence is the confidence below which the rules do not decide: the
	// failure is unknown (and not retried for a cause it may not have) unless the
	// learned model is sure enough of it (ModelMinConfidence). Default 0.5.
	MinConfidence float64 `yaml:"minConfidence"`
	// ModelMinConfidence is the calibrated probability below which the learned
	// model abstains (unknown, not retried); 0 means the model's own, chosen when it
	// was trained (0.3 for the embedded one).
	ModelMinConfidence float64 `yaml:"modelMinConfidence"`
	// Authority is the confidence at or above which the rules decide alone; below
	// it the learned model decides. Default 0.95.
	Authority float64 `yaml:"authority"`
	// Knowledge is a directory of knowledge tables (*.yaml) layered over the
	// embedded ones: an entry replaces the embedded entry of the same table and key.
	Knowledge string `yaml:"knowledge"`
	// Model is the learned classifier's artifact (from autofix train-classifier),
	// "none" for the rules and knowledge tables alone; empty means the embedded one.
	Model string `yaml:"model"`
}

// defaultCluster is a node of a large GPU pool: 8 GPUs, 96 cores, 1 TiB, 1.5 TB of
// local SSD.
func defaultCluster() Cluster {
	return Cluster{Discover: true, LargestNode: Node{MemoryGiB: 1024, CPU: 96, GPUs: 8, EphemeralStorageGiB: 1500}}
}

func (c *Config) validateCatalogue() error {
	if err := c.Catalogue.Validate(); err != nil {
		return fmt.Errorf("catalogue.%w", err)
	}
	for i, p := range c.Cluster.NodePools {
		if err := p.validate(fmt.Sprintf("cluster.nodePools[%d]", i)); err != nil {
			return err
		}
		if p.GPUs > 0 && p.GPUModel == "" {
			return fmt.Errorf("cluster.nodePools[%d].gpuModel: required with gpus", i)
		}
	}
	if err := c.Cluster.LargestNode.validate("cluster.largestNode"); err != nil {
		return err
	}
	if !(c.Classifier.MinConfidence > 0 && c.Classifier.MinConfidence < 1) {
		return fmt.Errorf("classifier.minConfidence: %g, want between 0 and 1", c.Classifier.MinConfidence)
	}
	if !(c.Classifier.ModelMinConfidence >= 0 && c.Classifier.ModelMinConfidence < 1) {
		return fmt.Errorf("classifier.modelMinConfidence: %g, want at least 0 and below 1", c.Classifier.ModelMinConfidence)
	}
	if !(c.Classifier.Authority > 0 && c.Classifier.Authority <= 1) {
		return fmt.Errorf("classifier.authority: %g, want more than 0 and at most 1", c.Classifier.Authority)
	}
	return nil
}

func (n Node) validate(field string) error {
	switch {
	case !(n.MemoryGiB >= 0 && n.MemoryGiB <= float64(failure.MaxMemoryBytes>>30)):
		return fmt.Errorf("%s.memoryGiB: %g, want 0 (no limit) to %d", field, n.MemoryGiB, failure.MaxMemoryBytes>>30)
	case !(n.CPU >= 0 && n.CPU <= failure.MaxCPUMillis/1000):
		return fmt.Errorf("%s.cpu: %g, want 0 (no limit) to %d", field, n.CPU, failure.MaxCPUMillis/1000)
	case n.GPUs < 0 || n.GPUs > 1024:
		return fmt.Errorf("%s.gpus: %d, want 0 (no limit) to 1024", field, n.GPUs)
	case !(n.EphemeralStorageGiB >= 0 && n.EphemeralStorageGiB <= float64(failure.MaxMemoryBytes>>30)):
		return fmt.Errorf("%s.ephemeralStorageGiB: %g, want 0 (no limit) to %d", field, n.EphemeralStorageGiB, failure.MaxMemoryBytes>>30)
	}
	return nil
}
