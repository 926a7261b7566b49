package service

import (
	"fmt"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/recommender"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/rules"
)

// brain is what decides: the rules, the models and the recommender, which prices its
// options with the configured catalogue and fits them to the nodes.
type brain struct {
	rec        *recommender.Recommender
	classifier *classifier.Classifier
	models     *models.Models
}

// newBrain builds the recommender from the configuration: the embedded rules (with
// classifier.minConfidence), models and fallback; catalogue's prices; the largest node
// of cluster.largestNode until discovery says otherwise; the policy's cost cap, so
// that nothing over it is proposed (and a cheaper option under it is chosen instead
// of one the policy would refuse); and backoffSeconds.
func newBrain(cfg *config.Config) (*brain, error) {
	rs, err := classifier.Load(rules.FS)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	c := classifier.New(rs, classifier.Options{MinConfidence: cfg.Classifier.MinConfidence})
	m, err := models.Default()
	if err != nil {
		return nil, err
	}
	fb, err := models.DefaultFallback()
	if err != nil {
		return nil, err
	}
	largest := cfg.Cluster.LargestNode.Resources()
	rec := recommender.New(c, m, fb, recommender.Options{
		Catalogue:      cfg.Catalogue,
		MaxMemoryBytes: largest.MemoryBytes, MaxCPUMillis: largest.CPUMillis, MaxEphemeralBytes: largest.EphemeralStorageBytes,
		MaxGPUs: largest.GPU, MaxCostMultiple: cfg.Policy.MaxCostMultiple, BackoffSeconds: cfg.BackoffSeconds,
	})
	return &brain{rec: rec, classifier: c, models: m}, nil
}

// offer tells the recommender what the nodes offer, as discovery found it. A resource
// no node reports keeps the configured bound: local storage on a cluster that does
// not account for it, and memory or CPU, which every node's status has (zero would
// be no limit at all). No GPU on any node is what it says.
func (b *brain) offer(o remediate.Offer, configured config.Node) {
	c := configured.Resources()
	largest := o.Largest
	if largest.EphemeralStorageBytes == 0 {
		largest.EphemeralStorageBytes = c.EphemeralStorageBytes
	}
	if largest.MemoryBytes == 0 {
		largest.MemoryBytes = c.MemoryBytes
	}
	if largest.CPUMillis == 0 {
		largest.CPUMillis = c.CPUMillis
	}
	types := o.GPUTypes
	if types == nil {
		types = []string{} // discovered: no GPU model at all
	}
	b.rec.SetCluster(recommender.Cluster{Largest: largest, GPUTypes: types})
}
