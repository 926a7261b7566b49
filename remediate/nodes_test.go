package remediate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

const gpuLabel = "nvidia.com/gpu.product"

func node(name, mem, cpu, gpus, disk, model string, ready bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if model != "" {
		n.Labels[gpuLabel] = model
	}
	n.Status.Allocatable = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem), corev1.ResourceCPU: resource.MustParse(cpu)}
	if gpus != "" {
		n.Status.Allocatable[ResourceGPU] = resource.MustParse(gpus)
	}
	if disk != "" {
		n.Status.Allocatable[corev1.ResourceEphemeralStorage] = resource.MustParse(disk)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
	return n
}

func TestNodeOffer(t *testing.T) {
	cordoned := node("cordoned", "4Ti", "512", "16", "", "nvidia-h200", true)
	cordoned.Spec.Unschedulable = true
	nodes := []*corev1.Node{
		node("cpu", "251Gi", "63900m", "", "900Gi", "", true),
		node("a100", "1000Gi", "95", "8", "1400Gi", "NVIDIA-A100-SXM4-80GB", true),
		node("l4", "180Gi", "47", "4", "", "NVIDIA-L4", true),
		node("l4-2", "180Gi", "47", "4", "", "NVIDIA-L4", true),
		node("down", "8Ti", "1000", "64", "", "nvidia-b200", false),
		cordoned,
	}
	got := NodeOffer(nodes, gpuLabel)
	want := Offer{Largest: failure.Resources{MemoryBytes: 1000 << 30, CPUMillis: 95000, GPU: 8, EphemeralStorageBytes: 1400 << 30},
		GPUTypes: []string{"NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"}, Nodes: 4}
	if got.Largest != want.Largest || !slices.Equal(got.GPUTypes, want.GPUTypes) || got.Nodes != want.Nodes {
		t.Errorf("NodeOffer = %+v\nwant %+v (not ready and cordoned nodes do not count)", got, want)
	}
	if o := NodeOffer(nil, gpuLabel); o.Nodes != 0 || o.Largest != (failure.Resources{}) {
		t.Errorf("no nodes: %+v", o)
	}
}

// A node's allocatable amounts are anyone's who can write its status (a kubelet, a
// device plugin): an absurd one counts as the most a job may ask for, and a negative
// one as nothing. Quantities past int64 once came out of Value and MilliValue
// wrapped (1e18 cores as 0 millicores: no limit at all), and a GPU count of 2^62
// made the recommender's GPU counts overflow and grow until the process died.
func TestNodeOfferBoundsAbsurdAllocatable(t *testing.T) {
	for _, c := range []struct {
		name                 string
		mem, cpu, gpus, disk string
		want                 failure.Resources
	}{
		{"max int64", "9223372036854775807", "9223372036854775807", "9223372036854775807", "9223372036854775807",
			failure.Resources{MemoryBytes: failure.MaxMemoryBytes, CPUMillis: failure.MaxCPUMillis, GPU: failure.MaxGPUs,
				EphemeralStorageBytes: failure.MaxMemoryBytes}},
		{"past int64", "1e30", "1e18", "1e23", "1e30",
			failure.Resources{MemoryBytes: failure.MaxMemoryBytes, CPUMillis: failure.MaxCPUMillis, GPU: failure.MaxGPUs,
				EphemeralStorageBytes: failure.MaxMemoryBytes}},
		{"negative", "-1Gi", "-4", "-8", "-1Ti", failure.Resources{}},
		{"ordinary", "64Gi", "15500m", "4", "100Gi",
			failure.Resources{MemoryBytes: 64 << 30, CPUMillis: 15500, GPU: 4, EphemeralStorageBytes: 100 << 30}},
	} {
		got := NodeOffer([]*corev1.Node{node("n", c.mem, c.cpu, c.gpus, c.disk, "", true)}, gpuLabel)
		if got.Largest != c.want {
			t.Errorf("%s: Largest = %+v, want %+v", c.name, got.Largest, c.want)
		}
	}
}

// DiscoverNodes offers what the nodes have when it starts and again as they change;
// a cluster with no schedulable node left offers nothing new.
func TestDiscoverNodesFollowsChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := fake.NewClientset(node("a", "64Gi", "16", "", "", "", true))
	offers := make(chan Offer, 16)
	done := make(chan error, 1)
	go func() {
		done <- DiscoverNodes(ctx, kube, func(o Offer) { offers <- o }, NodeOptions{GPUTypeLabel: gpuLabel, MinInterval: time.Millisecond})
	}()
	next := func(what string) Offer {
		t.Helper()
		select {
		case o := <-offers:
			return o
		case err := <-done:
			t.Fatalf("%s: DiscoverNodes returned %v", what, err)
		}
		return Offer{}
	}
	if o := next("first list"); o.Largest.MemoryBytes != 64<<30 || o.Nodes != 1 {
		t.Errorf("first offer %+v, want node a's 64Gi", o)
	}
	big := node("b", "512Gi", "64", "8", "", "nvidia-a100-80gb", true)
	if _, err := kube.CoreV1().Nodes().Create(ctx, big, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if o := next("node b added"); o.Largest.MemoryBytes != 512<<30 || o.Largest.GPU != 8 || !slices.Equal(o.GPUTypes, []string{"nvidia-a100-80gb"}) {
		t.Errorf("after b joined: %+v", o)
	}
	big.Spec.Unschedulable = true
	big.ResourceVersion = "2"
	if _, err := kube.CoreV1().Nodes().Update(ctx, big, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if o := next("node b cordoned"); o.Largest.MemoryBytes != 64<<30 || o.Largest.GPU != 0 || len(o.GPUTypes) != 0 {
		t.Errorf("after b was cordoned: %+v", o)
	}
	// The last schedulable node goes: nothing is offered (apply keeps the last), and
	// when one comes back, it is.
	if err := kube.CoreV1().Nodes().Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Nodes().Create(ctx, node("c", "32Gi", "8", "", "", "", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if o := next("node c added"); o.Largest.MemoryBytes != 32<<30 || o.Nodes != 1 {
		t.Errorf("after a went and c came: %+v (an offer of no node must never be made)", o)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("DiscoverNodes = %v after its context ended", err)
	}
}

// Nodes coming and going (an autoscaler, a node flapping between Ready and not) that
// change neither the largest node nor the GPU models are not news: one log line
// when what the recommender is told changes, not one a second while a node flaps.
func TestDiscoverNodesLogsWhatChangesTheOffer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := fake.NewClientset(node("a", "64Gi", "16", "", "", "", true))
	var logs syncBuffer
	offers := make(chan Offer, 16)
	done := make(chan error, 1)
	go func() {
		done <- DiscoverNodes(ctx, kube, func(o Offer) { offers <- o }, NodeOptions{GPUTypeLabel: gpuLabel, MinInterval: time.Millisecond,
			Log: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	<-offers
	for i := range 5 { // a node of a's size joins and leaves, five times
		twin := node("twin", "64Gi", "16", "", "", "", true)
		if _, err := kube.CoreV1().Nodes().Create(ctx, twin, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if o := <-offers; o.Nodes != 2 {
			t.Fatalf("round %d: %d nodes offered, want 2", i, o.Nodes)
		}
		if err := kube.CoreV1().Nodes().Delete(ctx, "twin", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if o := <-offers; o.Nodes != 1 {
			t.Fatalf("round %d: %d nodes offered, want 1", i, o.Nodes)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "nodes discovered"); n != 1 {
		t.Errorf("%d log lines of nodes discovered, want 1 (the largest node never changed):\n%s", n, logs.String())
	}
}

// Node labels are anyone's who may label nodes: thousands of distinct GPU-model
// values are named in the log by count and the first few, not in a line of
// megabytes.
func TestDiscoverNodesLogsManyGPUModelsBriefly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var objs []runtime.Object
	for i := range 2000 {
		objs = append(objs, node(fmt.Sprint("n", i), "64Gi", "16", "1", "", fmt.Sprintf("gpu-model-%050d", i), true))
	}
	kube := fake.NewClientset(objs...)
	var logs syncBuffer
	offers := make(chan Offer, 1)
	done := make(chan error, 1)
	go func() {
		done <- DiscoverNodes(ctx, kube, func(o Offer) { offers <- o }, NodeOptions{GPUTypeLabel: gpuLabel,
			Log: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	if o := <-offers; len(o.GPUTypes) != 2000 {
		t.Errorf("%d GPU models offered, want all 2000", len(o.GPUTypes))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(logs.String()); n > 4096 {
		t.Errorf("the log of the offer is %d bytes, want at most 4 KiB", n)
	}
}

// The informer keeps of each node only what an offer reads.
func TestSlimNodeKeepsWhatAnOfferReads(t *testing.T) {
	n := node("a", "64Gi", "16", "8", "100Gi", "nvidia-l4", true)
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.example.com/big:1"}, SizeBytes: 1 << 30}}
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
	got, err := slimNode(n)
	if err != nil {
		t.Fatal(err)
	}
	s := got.(*corev1.Node)
	if len(s.Status.Images) != 0 || len(s.ManagedFields) != 0 || len(s.Annotations) != 0 {
		t.Errorf("slim node keeps images %v, managed fields %v, annotations %v", s.Status.Images, s.ManagedFields, s.Annotations)
	}
	if a, b := NodeOffer([]*corev1.Node{n}, gpuLabel), NodeOffer([]*corev1.Node{s}, gpuLabel); !a.equal(&b) {
		t.Errorf("offer of the slim node %+v, of the node %+v: want the same", b, a)
	}
}
