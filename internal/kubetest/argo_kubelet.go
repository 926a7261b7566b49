package kubetest

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/autofix/autofix/simcluster"
)

// argoWorkflowLabel is on every pod Argo's controller creates: its Workflow's name.
const argoWorkflowLabel = "workflows.argoproj.io/workflow"

// RunArgoKubelet plays the node for the pods of Argo Workflows until the test ends,
// as the simulated kubelet (RunKubelet) does for other pods: it registers node, binds
// each new pod labelled workflows.argoproj.io/workflow to it, runs it, and ends it as
// truth says of its main container. An Argo pod runs Argo's executor beside that
// container (init container "init", container "wait", which the simulated kubelet
// would take for the main one): here they start and end with exit code 0, as they
// do when the executor has nothing to save, and the container "main" ends as truth
// says (its memory limit and the template's annotations decide, as for a Job's pod).
// Run it instead of RunKubelet: the two would both take the same pods.
func RunArgoKubelet(t testing.TB, client kubernetes.Interface, truth simcluster.Truth, node simcluster.Node) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := simcluster.NewKubelet(client, truth, node).Register(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	sel, err := labels.Parse(argoWorkflowLabel)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = sel.String()
	}))
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			pod, ok := obj.(*corev1.Pod)
			mu.Lock()
			defer mu.Unlock()
			if !ok || seen[string(pod.UID)] || pod.Status.Phase != corev1.PodPending {
				return
			}
			seen[string(pod.UID)] = true
			wg.Go(func() { runArgoPod(ctx, client, truth, node.Name, pod) })
		},
	}); err != nil {
		cancel()
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	t.Cleanup(func() {
		cancel() // first: Shutdown waits for the informers, which stop with ctx
		f.Shutdown()
		wg.Wait()
	})
}

// runArgoPod takes one of Argo's pods from creation to its end.
func runArgoPod(ctx context.Context, client kubernetes.Interface, truth simcluster.Truth, node string, pod *corev1.Pod) {
	err := client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err != nil {
		return
	}
	// truth reads the first container: the main one goes first in the copy it sees.
	view := pod.DeepCopy()
	for i, c := range view.Spec.Containers {
		if c.Name == "main" {
			view.Spec.Containers[0], view.Spec.Containers[i] = view.Spec.Containers[i], view.Spec.Containers[0]
		}
	}
	o := truth(view)
	started := metav1.Now()
	running := func(name, image string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Image: image, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}
	}
	setArgoPodStatus(ctx, client, pod, func(p *corev1.Pod) {
		p.Status.Phase, p.Status.StartTime = corev1.PodRunning, &started
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started}}
		p.Status.InitContainerStatuses = nil
		for _, c := range p.Spec.InitContainers {
			p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: started, FinishedAt: started}}})
		}
		p.Status.ContainerStatuses = nil
		for _, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, running(c.Name, c.Image))
		}
	})
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
	setArgoPodStatus(ctx, client, pod, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodSucceeded
		if !o.Succeed {
			p.Status.Phase = corev1.PodFailed
		}
		for i := range p.Status.ContainerStatuses {
			cs := &p.Status.ContainerStatuses[i]
			term := &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: started, FinishedAt: finished}
			if cs.Name == "main" && !o.Succeed {
				term.ExitCode, term.Reason, term.Message = o.ExitCode, o.Reason, o.Message
			}
			cs.State = corev1.ContainerState{Terminated: term}
		}
	})
}

// setArgoPodStatus applies edit to the pod's status, retrying on conflicts.
func setArgoPodStatus(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, edit func(*corev1.Pod)) {
	_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		edit(p)
		_, err = client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}
