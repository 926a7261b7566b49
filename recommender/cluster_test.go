package recommender_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/recommender"
)

// What the nodes offer changes while the service runs: a recommendation made after
// SetCluster fits the new largest node and proposes only the GPU models the nodes have.
func TestSetClusterBoundsLaterRecommendations(t *testing.T) {
	r := newRecommender(t)
	ev, history := gpuEvent()
	before := r.Recommend(ev, history)
	if len(before.Options) == 0 {
		t.Fatalf("no options before: %s", before.Explanation)
	}
	types := map[string]bool{}
	for _, o := range before.Options {
		types[o.Resources.GPUType] = true
	}
	if len(types) < 2 {
		t.Fatalf("options use %v: want several GPU models before the cluster says otherwise", types)
	}

	// Nodes with at most 2 GPUs, 128 GiB, and only A100s of 40 GB and L4s (and a model
	// the catalogue does not price, which is never proposed).
	small := failure.Resources{MemoryBytes: 128 << 30, CPUMillis: 32000, GPU: 2}
	r.SetCluster(recommender.Cluster{Largest: small, GPUTypes: []string{"NVIDIA-A100-40GB", "nvidia-l4", "acme-x1"}})
	if got := r.Cluster(); got.Largest != small || !slices.Equal(got.GPUTypes, []string{"nvidia-l4", "nvidia-a100-40gb"}) {
		t.Errorf("Cluster() = %+v, want the largest node and the catalogue's models among the nodes'", got)
	}
	after := r.Recommend(ev, history)
	if len(after.Options) == 0 {
		t.Fatalf("no options after: %s", after.Explanation)
	}
	for _, o := range after.Options {
		res := o.Resources
		if res.GPU > 2 || res.MemoryBytes > 128<<30 || res.CPUMillis > 32000 {
			t.Errorf("option %+v does not fit the largest node %+v", res, small)
		}
		if res.GPUType != "nvidia-a100-40gb" && res.GPUType != "nvidia-l4" {
			t.Errorf("option on %s: no node has it", res.GPUType)
		}
	}

	// The memory of an OOM is capped by the new largest node too.
	oom := oomEvent()
	r.SetCluster(recommender.Cluster{Largest: failure.Resources{MemoryBytes: 20 << 30}})
	for _, o := range r.Recommend(oom, nil).Options {
		if o.Resources.MemoryBytes > 20<<30 {
			t.Errorf("OOM option asks for %s, over the largest node's 20 GiB", failure.FormatBytes(o.Resources.MemoryBytes))
		}
	}
}

// Discovery calls SetCluster from its own goroutine while events are decided.
func TestSetClusterWhileRecommending(t *testing.T) {
	r := newRecommender(t)
	ev := oomEvent()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 50 {
			r.SetCluster(recommender.Cluster{Largest: failure.Resources{MemoryBytes: int64(32+i) << 30}})
		}
	})
	for range 20 {
		r.Recommend(ev, nil)
	}
	wg.Wait()
}
