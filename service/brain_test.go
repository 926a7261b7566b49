package service

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/remediate"
)

func gpuOOM() *failure.Event {
	return &failure.Event{
		ID: "g", Job: failure.Job{Namespace: "ml", Name: "ft-3", Template: "ft", Attempt: 1, Kind: failure.Training,
			Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 32 << 30, GPU: 1, GPUType: "nvidia-tesla-t4"},
		},
		Failure: failure.Signals{Reason: "Error", ExitCode: 1, DurationSeconds: 40,
			LogTail: strings.Repeat("step 10 loss 2.1\n", 20) + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB."},
	}
}

// The policy's cost cap is the recommender's: nothing over it is proposed, so that a
// cheaper option under it is chosen rather than one the policy would then refuse.
func TestPolicyCostCapReachesTheRecommender(t *testing.T) {
	recommend := func(capped float64) (chosen failure.Option, dearest float64) {
		cfg := config.Default()
		cfg.Policy.MaxCostMultiple = capped
		b, err := newBrain(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.rec.MaxCostMultiple(); got != capped {
			t.Errorf("recommender's cap %g, want the policy's %g", got, capped)
		}
		rec := b.rec.Recommend(gpuOOM(), nil)
		for _, o := range rec.Options {
			dearest = max(dearest, o.CostMultiple)
		}
		chosen, ok := rec.ChosenOption()
		if !ok {
			t.Fatalf("cap %g: no retry: %s", capped, rec.Explanation)
		}
		return chosen, dearest
	}
	free, dearest := recommend(16)
	if dearest <= 1.5 {
		t.Fatalf("the dearest option costs %.2fx: the event does not test a cap of 1.5", dearest)
	}
	chosen, dearest := recommend(1.5)
	if dearest > 1.5 || chosen.CostMultiple > 1.5 {
		t.Errorf("policy cap 1.5: chose %.2fx, the dearest option %.2fx; want none over 1.5x", chosen.CostMultiple, dearest)
	}
	t.Logf("chosen %.2fx uncapped, %.2fx under a cap of 1.5", free.CostMultiple, chosen.CostMultiple)
}

func TestMinConfidenceFromTheConfiguration(t *testing.T) {
	ev := &failure.Event{ID: "x", Job: failure.Job{Namespace: "ml", Name: "j", Kind: failure.Batch,
		Resources: failure.Resources{CPUMillis: 1000, MemoryBytes: 1 << 30}},
		Failure: failure.Signals{Reason: "Error", ExitCode: 1, DurationSeconds: 10, Message: "something odd happened"}}
	for _, min := range []float64{0.5, 0.99} {
		cfg := config.Default()
		cfg.Classifier.MinConfidence, cfg.Classifier.ModelMinConfidence = min, min
		b, err := newBrain(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		cl := b.classifier.Classify(ev)
		if cl.Category != failure.Unknown && cl.Confidence < min {
			t.Errorf("minConfidence %g: %s at %.2f; want unknown below the configured minimum", min, cl.Category, cl.Confidence)
		}
	}
}

// What discovery finds replaces the configured largest node and restricts the GPU
// models; a resource no node reports keeps the configured bound.
func TestOfferReachesTheRecommender(t *testing.T) {
	cfg := config.Default()
	b, err := newBrain(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.rec.Cluster().Largest; got != cfg.Cluster.LargestNode.Resources() {
		t.Errorf("before discovery: %+v, want cluster.largestNode %+v", got, cfg.Cluster.LargestNode.Resources())
	}
	b.offer(remediate.Offer{Largest: failure.Resources{MemoryBytes: 256 << 30, CPUMillis: 32000, GPU: 4},
		GPUTypes: []string{"nvidia-l4"}, Nodes: 3}, &cfg.Cluster, cfg.Catalogue, slog.New(slog.DiscardHandler))
	got := b.rec.Cluster()
	want := failure.Resources{MemoryBytes: 256 << 30, CPUMillis: 32000, GPU: 4, EphemeralStorageBytes: cfg.Cluster.LargestNode.Resources().EphemeralStorageBytes}
	if got.Largest != want || len(got.GPUTypes) != 1 || got.GPUTypes[0] != "nvidia-l4" {
		t.Errorf("after discovery: %+v, want %+v on nvidia-l4", got, want)
	}
	for _, o := range b.rec.Recommend(gpuOOM(), nil).Options {
		if o.Resources.GPUType != "nvidia-l4" && o.Resources.GPUType != "nvidia-tesla-t4" || o.Resources.GPU > 4 {
			t.Errorf("option %+v: not on the discovered nodes", o.Resources)
		}
	}
	// A cluster with no GPU model: only the failed run's.
	b.offer(remediate.Offer{Largest: failure.Resources{MemoryBytes: 256 << 30, CPUMillis: 32000}, Nodes: 1}, &cfg.Cluster, cfg.Catalogue, slog.New(slog.DiscardHandler))
	if got := b.rec.Cluster().GPUTypes; len(got) != 0 {
		t.Errorf("GPU models %v on a cluster without any", got)
	}
}

// Memory and CPU are on every node's status: an offer without them (nodes whose
// allocatable is missing, or negative, or zero) keeps the configured bounds
// instead of lifting them (zero is "no limit" to the recommender).
func TestOfferWithoutMemoryOrCPUKeepsTheConfiguredBounds(t *testing.T) {
	cfg := config.Default()
	b, err := newBrain(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.offer(remediate.Offer{Largest: failure.Resources{GPU: 4}, GPUTypes: []string{"nvidia-l4"}, Nodes: 2}, &cfg.Cluster, cfg.Catalogue, slog.New(slog.DiscardHandler))
	c := cfg.Cluster.LargestNode.Resources()
	want := failure.Resources{MemoryBytes: c.MemoryBytes, CPUMillis: c.CPUMillis, GPU: 4, EphemeralStorageBytes: c.EphemeralStorageBytes}
	if got := b.rec.Cluster().Largest; got != want {
		t.Errorf("largest node %+v, want %+v (the configured memory and CPU)", got, want)
	}
}

// A GPU pool an autoscaler can add (scaled to zero now) is offered with the nodes
// there are; GPU models without a price are logged once, and not proposed.
func TestNodePoolsWidenTheOffer(t *testing.T) {
	cfg := config.Default()
	cfg.Cluster.NodePools = []config.NodePool{{Node: config.Node{MemoryGiB: 1800, CPU: 192, GPUs: 8}, GPUModel: "nvidia-h100-80gb"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := newBrain(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 {
		b.offer(remediate.Offer{Largest: failure.Resources{MemoryBytes: 256 << 30, CPUMillis: 32000, GPU: 4},
			GPUTypes: []string{"NVIDIA-A100-SXM4-80GB", "nvidia-a100-40gb"}, Nodes: 5}, &cfg.Cluster, cfg.Catalogue, log)
	}
	got := b.rec.Cluster()
	if got.Largest.MemoryBytes != 1800<<30 || got.Largest.GPU != 8 || got.Largest.CPUMillis != 192000 {
		t.Errorf("largest %+v, want the H100 pool's 1800 GiB, 192 cores, 8 GPUs", got.Largest)
	}
	if !slices.Contains(got.GPUTypes, "nvidia-h100-80gb") || !slices.Contains(got.GPUTypes, "nvidia-a100-40gb") {
		t.Errorf("GPU models %v, want the nodes' and the pool's", got.GPUTypes)
	}
	if n := strings.Count(logs.String(), "no price in catalogue.gpus"); n != 1 || !strings.Contains(logs.String(), "NVIDIA-A100-SXM4-80GB") {
		t.Errorf("the unpriced model logged %d times, want once, naming it:\n%s", n, logs.String())
	}
	cfg.Cluster.NodePools[0].GPUModel = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cluster.nodePools[0].gpuModel") {
		t.Errorf("a GPU pool without its model: %v", err)
	}
}
