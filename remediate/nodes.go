package remediate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/autofix/autofix/failure"
)

// Offer is what a cluster's nodes offer to one pod.
type Offer struct {
	// Largest is, for each resource, the most any schedulable node can allocate:
	// memory, CPU, local (ephemeral) storage and GPUs (nvidia.com/gpu).
	Largest failure.Resources
	// GPUTypes are the values of the GPU-model label on the schedulable nodes,
	// sorted; empty when no node has one.
	GPUTypes []string
	// Nodes is how many nodes are schedulable (Ready and not cordoned).
	Nodes int
}

// NodeOptions configure DiscoverNodes.
type NodeOptions struct {
	// GPUTypeLabel is the node label naming the GPU model.
	GPUTypeLabel string
	// MinInterval spaces out the offers made as nodes change (heartbeats and
	// status updates come in bursts): default 1 s.
	MinInterval time.Duration
	Log         *slog.Logger
}

// DiscoverNodes watches the cluster's nodes and calls apply with what they offer:
// once the first list is in, and again whenever the offer changes (a node added,
// removed, cordoned, not ready, resized or relabelled), at most once per
// MinInterval. No schedulable node at all is not an offer: apply keeps what it had.
// It returns when ctx ends; it needs list and watch on nodes.
func DiscoverNodes(ctx context.Context, kube kubernetes.Interface, apply func(Offer), o NodeOptions) error {
	if o.MinInterval <= 0 {
		o.MinInterval = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	// Only what an offer reads is kept of each node: on a large cluster, whole Nodes
	// (their image lists, managed fields, annotations) are tens of MB per replica.
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(slimNode))
	inf := f.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() },
		UpdateFunc: func(old, cur any) {
			if o, ok := old.(*corev1.Node); ok {
				if n, ok := cur.(*corev1.Node); ok && o.ResourceVersion == n.ResourceVersion {
					return // a resync
				}
			}
			poke()
		},
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	// Until the first list, the configured bounds hold; say so if it takes long (no
	// right to list or watch nodes, most likely), rather than only in client-go's log.
	slow := time.AfterFunc(time.Minute, func() {
		o.Log.Warn("nodes not listed after a minute: the configured cluster.largestNode holds until they are; " +
			"autofix needs list and watch on nodes (cluster-wide, read-only), or cluster.discover: false")
	})
	synced := cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced)
	slow.Stop()
	if !synced {
		return ctx.Err()
	}
	lister := inf.Lister()
	var last *Offer
	for {
		nodes, err := lister.List(labels.Everything())
		if err != nil {
			return fmt.Errorf("nodes: %w", err)
		}
		offer := NodeOffer(nodes, o.GPUTypeLabel)
		switch {
		case offer.Nodes == 0:
			if last == nil || last.Nodes > 0 {
				o.Log.Warn("no schedulable node: keeping what the nodes offered last (or the configured cluster.largestNode)")
			}
		case last == nil || !offer.equal(last):
			// Only a new largest node or GPU models is news: nodes coming and going
			// (an autoscaler, a node flapping) would log a line a MinInterval.
			level := slog.LevelInfo
			if last != nil && last.Nodes > 0 && offer.Largest == last.Largest && slices.Equal(offer.GPUTypes, last.GPUTypes) {
				level = slog.LevelDebug
			}
			o.Log.Log(ctx, level, "nodes discovered", "schedulable", offer.Nodes, "memory", failure.FormatBytes(offer.Largest.MemoryBytes),
				"cpuMillis", offer.Largest.CPUMillis, "gpus", offer.Largest.GPU, "ephemeralStorage",
				failure.FormatBytes(offer.Largest.EphemeralStorageBytes), "gpuTypes", len(offer.GPUTypes),
				"firstGPUTypes", offer.GPUTypes[:min(len(offer.GPUTypes), maxLoggedGPUTypes)])
			apply(offer)
		}
		last = &offer
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		select { // let a burst of changes settle into one offer
		case <-ctx.Done():
			return nil
		case <-time.After(o.MinInterval):
		}
	}
}

// maxLoggedGPUTypes bounds the GPU models the log names: node labels are anyone's
// who may label nodes.
const maxLoggedGPUTypes = 16

// NodeOffer is what nodes offer to one pod: of the schedulable ones (Ready, not
// cordoned), the largest allocatable amount of each resource (held to the most one
// job may ask for: failure.MaxMemoryBytes, MaxCPUMillis, MaxGPUs) and the GPU models.
func NodeOffer(nodes []*corev1.Node, gpuTypeLabel string) Offer {
	var o Offer
	types := map[string]bool{} // a set, not a search of GPUTypes: a value per node is quadratic
	for _, n := range nodes {
		if n.Spec.Unschedulable || !nodeReady(n) {
			continue
		}
		o.Nodes++
		a := n.Status.Allocatable
		o.Largest.MemoryBytes = max(o.Largest.MemoryBytes, bounded(a[corev1.ResourceMemory], failure.MaxMemoryBytes, false))
		o.Largest.CPUMillis = max(o.Largest.CPUMillis, bounded(a[corev1.ResourceCPU], failure.MaxCPUMillis, true))
		o.Largest.EphemeralStorageBytes = max(o.Largest.EphemeralStorageBytes,
			bounded(a[corev1.ResourceEphemeralStorage], failure.MaxMemoryBytes, false))
		o.Largest.GPU = max(o.Largest.GPU, int(bounded(a[ResourceGPU], failure.MaxGPUs, false)))
		if t := n.Labels[gpuTypeLabel]; t != "" && !types[t] {
			types[t] = true
			o.GPUTypes = append(o.GPUTypes, t)
		}
	}
	slices.Sort(o.GPUTypes)
	return o
}

// bounded is q in units (millis: thousandths) held to [0, most]: a node's status is
// anyone's who can write it, and a quantity past int64 comes out of Value and
// MilliValue wrapped. Negative is nothing.
func bounded(q resource.Quantity, most int64, millis bool) int64 {
	if q.Sign() <= 0 {
		return 0
	}
	if millis {
		if q.Cmp(*resource.NewMilliQuantity(most, resource.DecimalSI)) >= 0 {
			return most
		}
		return q.MilliValue()
	}
	if q.Cmp(*resource.NewQuantity(most, resource.DecimalSI)) >= 0 {
		return most
	}
	return q.Value()
}

// slimNode keeps of a node its name, version, labels, spec and allocatable
// resources and conditions.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels},
		Spec:       corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable},
		Status:     corev1.NodeStatus{Allocatable: n.Status.Allocatable, Conditions: n.Status.Conditions},
	}, nil
}

func (o *Offer) equal(p *Offer) bool {
	return o.Largest == p.Largest && o.Nodes == p.Nodes && slices.Equal(o.GPUTypes, p.GPUTypes)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
