package service

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/recommender"
	"github.com/autofix/autofix/remediate"
)

// brain is what decides: the rules, the models and the recommender, which prices its
// options with the configured catalogue and fits them to the nodes.
type brain struct {
	rec        *recommender.Recommender
	classifier *classifier.Classifier
	models     *models.Models
	unpriced   string // the GPU models without a price last logged (discovery's goroutine only)
}

// newBrain builds the recommender from the configuration: the embedded rules (with
// classifier.minConfidence), models and fallback; catalogue's prices; the largest node
// of cluster.largestNode until discovery says otherwise; the policy's cost cap, so
// that nothing over it is proposed (and a cheaper option under it is chosen instead
// of one the policy would refuse); and backoffSeconds.
func newBrain(cfg *config.Config) (*brain, error) {
	c, err := NewClassifier(cfg)
	if err != nil {
		return nil, err
	}
	m, err := models.Default()
	if err != nil {
		return nil, err
	}
	largest, _ := withPools(cfg.Cluster.LargestNode.Resources(), nil, cfg.Cluster.NodePools)
	rec := recommender.New(c, m, recommender.Options{
		Catalogue:      cfg.Catalogue,
		MaxMemoryBytes: largest.MemoryBytes, MaxCPUMillis: largest.CPUMillis, MaxEphemeralBytes: largest.EphemeralStorageBytes,
		MaxGPUs: largest.GPU, MaxCostMultiple: cfg.Policy.MaxCostMultiple, BackoffSeconds: cfg.BackoffSeconds,
	})
	return &brain{rec: rec, classifier: c, models: m}, nil
}

// NewClassifier builds the classifier the configuration describes: the embedded
// rules, the knowledge tables (with classifier.knowledge layered over them) and the
// learned model (classifier.model), with classifier.minConfidence and
// classifier.authority.
func NewClassifier(cfg *config.Config) (*classifier.Classifier, error) {
	c, err := classifier.LoadDefault(
		classifier.Sources{KnowledgeDir: cfg.Classifier.Knowledge, ModelFile: cfg.Classifier.Model},
		classifier.Options{MinConfidence: cfg.Classifier.MinConfidence, ModelMinConfidence: cfg.Classifier.ModelMinConfidence,
			Authority: cfg.Classifier.Authority})
	if err != nil {
		return nil, fmt.Errorf("classifier.%w", err)
	}
	return c, nil
}

// offer tells the recommender what the nodes offer, as discovery found it, widened
// by cluster.nodePools (what an autoscaler can add). A resource no node reports
// keeps the configured bound: local storage on a cluster that does not account for
// it, and memory or CPU, which every node's status has (zero would be no limit at
// all). No GPU on any node or pool is what it says. GPU models without a price in
// the catalogue are logged, once per set: they cannot be proposed.
func (b *brain) offer(o remediate.Offer, c *config.Cluster, catalogue failure.Catalogue, log *slog.Logger) {
	conf := c.LargestNode.Resources()
	largest := o.Largest
	if largest.EphemeralStorageBytes == 0 {
		largest.EphemeralStorageBytes = conf.EphemeralStorageBytes
	}
	if largest.MemoryBytes == 0 {
		largest.MemoryBytes = conf.MemoryBytes
	}
	if largest.CPUMillis == 0 {
		largest.CPUMillis = conf.CPUMillis
	}
	largest, types := withPools(largest, o.GPUTypes, c.NodePools)
	if types == nil {
		types = []string{} // discovered: no GPU model at all
	}
	var unpriced []string
	for _, t := range types {
		if _, ok := catalogue.GPU(t); !ok {
			unpriced = append(unpriced, t)
		}
	}
	if key := strings.Join(unpriced, ","); key != b.unpriced {
		b.unpriced = key
		if len(unpriced) > 0 {
			log.Warn("GPU models on the nodes have no price in catalogue.gpus (named by the node label's values): autofix "+
				"does not propose them", "models", unpriced[:min(len(unpriced), 16)], "count", len(unpriced))
		}
	}
	b.rec.SetCluster(recommender.Cluster{Largest: largest, GPUTypes: types})
}

// withPools widens what the nodes offer by the node pools an autoscaler can add.
func withPools(largest failure.Resources, types []string, pools []config.NodePool) (failure.Resources, []string) {
	for _, p := range pools {
		r := p.Resources()
		largest.MemoryBytes = max(largest.MemoryBytes, r.MemoryBytes)
		largest.CPUMillis = max(largest.CPUMillis, r.CPUMillis)
		largest.GPU = max(largest.GPU, r.GPU)
		largest.EphemeralStorageBytes = max(largest.EphemeralStorageBytes, r.EphemeralStorageBytes)
		if p.GPUModel != "" && !slices.Contains(types, p.GPUModel) {
			types = append(slices.Clone(types), p.GPUModel)
		}
	}
	return largest, types
}
