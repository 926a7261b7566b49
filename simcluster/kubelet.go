package simcluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// Outcome is how a pod's main container ends, as the test's ground truth decides
// from what the pod asks for.
type Outcome struct {
	// Succeed: a Job's pod exits 0; a Deployment's pod runs and is Ready.
	Succeed bool
	// Reason, ExitCode and Message are the container's termination (e.g. "OOMKilled",
	// 137); Message is what terminationMessagePolicy FallbackToLogsOnError would
	// hold: the last lines of the log.
	Reason   string
	ExitCode int32
	Message  string
	// Evicted fails the pod by eviction instead (status.reason Evicted); Preempted by
	// preemption (a DisruptionTarget condition, the container ended with 143).
	Evicted, Preempted bool
	// Waiting keeps the container from starting, with this reason (ErrImagePull, ...).
	Waiting string
	// RunFor is how long it runs before it ends (default 300 ms).
	RunFor time.Duration
	// Peaks is what its main container uses at its highest while it runs: the
	// series the nodes expose for it (MetricsAPI). Zero: no series.
	Peaks Peaks
}

// Peaks is what a pod's main container uses at its highest, in bytes: its memory
// working set, its memory on each of its GPUs, the local storage it wrote.
type Peaks struct {
	MemoryBytes, GPUMemoryBytes, StorageBytes int64
}

// Truth decides a pod's outcome.
type Truth func(pod *corev1.Pod) Outcome

// Node is a node the Kubelet creates and places pods on.
type Node struct {
	Name   string
	Labels map[string]string
}

// Kubelet plays the nodes: it binds each new pod to the first node its node selector
// and required node affinity allow, starts it, and ends it as Truth says — writing
// pod status through the API, so the controllers (the real ones against a real API
// server, the simulated cluster's otherwise) take it from there.
type Kubelet struct {
	client kubernetes.Interface
	truth  Truth
	nodes  []Node
	mu     sync.Mutex
	seen   map[string]bool
	logs   map[string]string
	usage  map[string]*podUsage // by namespace/name
}

// NewKubelet returns a kubelet for nodes (one node, "node-1", if none).
func NewKubelet(client kubernetes.Interface, truth Truth, nodes ...Node) *Kubelet {
	if len(nodes) == 0 {
		nodes = []Node{{Name: "node-1"}}
	}
	return &Kubelet{client: client, truth: truth, nodes: nodes, seen: map[string]bool{}, logs: map[string]string{},
		usage: map[string]*podUsage{}}
}

// Start registers the nodes and plays them until ctx ends.
func (k *Kubelet) Start(ctx context.Context) error {
	if err := k.Register(ctx); err != nil {
		return err
	}
	f := informers.NewSharedInformerFactory(k.client, 0)
	pods := f.Core().V1().Pods().Informer()
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { go k.run(ctx, obj.(*corev1.Pod)) },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	return nil
}

// Register creates the nodes that do not exist yet: ready, each with 96 cores, 1 TiB,
// 8 GPUs and 1500 GiB of local storage to allocate.
func (k *Kubelet) Register(ctx context.Context) error {
	for _, n := range k.nodes {
		l := map[string]string{corev1.LabelHostname: n.Name}
		for key, v := range n.Labels {
			l[key] = v
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: l}}
		created, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		created.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("96"),
			corev1.ResourceMemory: resource.MustParse("1Ti"), "nvidia.com/gpu": resource.MustParse("8"), corev1.ResourcePods: resource.MustParse("500"),
			corev1.ResourceEphemeralStorage: resource.MustParse("1500Gi")}
		created.Status.Allocatable = created.Status.Capacity
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
		if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// Log is what the pod's container wrote (its termination message), as the pods/log
// API would serve it.
func (k *Kubelet) Log(namespace, name string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.logs[namespace+"/"+name]
}

func (k *Kubelet) allLogs() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]string, len(k.logs))
	for key, v := range k.logs {
		out[key] = v
	}
	return out
}

// forget drops what it kept of a deleted pod.
func (k *Kubelet) forget(namespace, name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.logs, namespace+"/"+name)
}

func (k *Kubelet) setLogs(logs map[string]string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, v := range logs {
		k.logs[key] = v
	}
}

// run takes one pod from creation to its end.
func (k *Kubelet) run(ctx context.Context, pod *corev1.Pod) {
	k.mu.Lock()
	if k.seen[string(pod.UID)] || pod.Status.Phase != corev1.PodPending {
		k.mu.Unlock()
		return
	}
	k.seen[string(pod.UID)] = true
	k.mu.Unlock()
	node := k.place(pod)
	if node == "" {
		k.status(ctx, pod, func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
				LastTransitionTime: metav1.Now()}}
		})
		return
	}
	if pod.Spec.NodeName == "" {
		err := k.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{})
		if err != nil {
			return
		}
	}
	o := k.truth(pod)
	if o.Message != "" {
		k.mu.Lock()
		k.logs[pod.Namespace+"/"+pod.Name] = o.Message
		k.mu.Unlock()
	}
	name := pod.Spec.Containers[0].Name
	if o.Waiting != "" {
		k.status(ctx, pod, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: name, Image: p.Spec.Containers[0].Image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: o.Waiting,
					Message: fmt.Sprintf("Back-off pulling image %q", p.Spec.Containers[0].Image)}}}}
		})
		return
	}
	started := metav1.Now()
	k.status(ctx, pod, func(p *corev1.Pod) {
		p.Status.Phase, p.Status.StartTime = corev1.PodRunning, &started
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: name, Image: p.Spec.Containers[0].Image, Started: ptr(true),
			Ready: o.Succeed, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: cond(o.Succeed), LastTransitionTime: started},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started}}
	})
	k.started(pod, node, started.Time, o.Peaks)
	if pod.Spec.RestartPolicy == corev1.RestartPolicyAlways && o.Succeed {
		return // a healthy server runs on
	}
	run := o.RunFor
	if run == 0 {
		run = 300 * time.Millisecond
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(run):
	}
	finished := metav1.Now()
	k.ended(pod, finished.Time)
	k.status(ctx, pod, func(p *corev1.Pod) {
		term := &corev1.ContainerStateTerminated{ExitCode: o.ExitCode, Reason: o.Reason, Message: o.Message,
			StartedAt: started, FinishedAt: finished}
		cs := &p.Status.ContainerStatuses[0]
		cs.Ready = false
		switch {
		case pod.Spec.RestartPolicy == corev1.RestartPolicyAlways: // a crashing server
			cs.RestartCount = 5
			cs.LastTerminationState = corev1.ContainerState{Terminated: term}
			cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: "back-off 2m40s restarting failed container"}}
		case o.Preempted:
			p.Status.Phase = corev1.PodFailed
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
				Status: corev1.ConditionTrue, Reason: "PreemptionByScheduler", LastTransitionTime: metav1.Now(),
				Message: "Preempted in order to admit critical pod"})
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143, Reason: "Error",
				StartedAt: started, FinishedAt: finished}}
		case o.Evicted:
			p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted"
			p.Status.Message = "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 812Mi."
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error",
				StartedAt: started, FinishedAt: finished}}
		case o.Succeed:
			term.Reason, term.ExitCode = "Completed", 0
			p.Status.Phase = corev1.PodSucceeded
			cs.State = corev1.ContainerState{Terminated: term}
		default:
			p.Status.Phase = corev1.PodFailed
			cs.State = corev1.ContainerState{Terminated: term}
		}
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == corev1.PodReady {
				p.Status.Conditions[i].Status = corev1.ConditionFalse
			}
		}
	})
}

// place picks the first node the pod's node selector and required node affinity
// (In / NotIn on node labels) allow.
func (k *Kubelet) place(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName
	}
	for _, n := range k.nodes {
		l := labels.Set{corev1.LabelHostname: n.Name}
		for key, v := range n.Labels {
			l[key] = v
		}
		if !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(l) {
			continue
		}
		if fits(pod, l) {
			return n.Name
		}
	}
	return ""
}

func fits(pod *corev1.Pod, l labels.Set) bool {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		ok := true
		for _, r := range term.MatchExpressions {
			v, has := l[r.Key]
			in := false
			for _, x := range r.Values {
				in = in || (has && v == x)
			}
			switch r.Operator {
			case corev1.NodeSelectorOpIn:
				ok = ok && in
			case corev1.NodeSelectorOpNotIn:
				ok = ok && !in
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// status applies edit to the pod's status, retrying on conflicts.
func (k *Kubelet) status(ctx context.Context, pod *corev1.Pod, edit func(*corev1.Pod)) {
	_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		edit(p)
		_, err = k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}

func cond(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

func ptr[T any](v T) *T { return &v }
