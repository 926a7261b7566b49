package service

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/promtest"
	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/remediate"
)

// published is a remediate.Publisher that keeps the events, and signals each.
type published struct {
	mu      sync.Mutex
	events  map[string]*failure.Event // by job name
	changed testwait.Signal
}

func (p *published) Publish(_ context.Context, ev *failure.Event) error {
	p.mu.Lock()
	p.events[ev.Job.Name] = ev
	p.mu.Unlock()
	p.changed.Notify()
	return nil
}

func (p *published) get(job string) *failure.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events[job]
}

// oomJob is a Job that failed at end, and its OOMKilled pod that ran from start.
func oomJob(name string, start, end time.Time) (*batchv1.Job, *corev1.Pod) {
	uid := types.UID("uid-" + name)
	c := corev1.Container{Name: "train", Image: "train:1", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi"), remediate.ResourceGPU: resource.MustParse("2")}}}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", UID: uid},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{c},
			NodeSelector: map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"}}}},
		Status: batchv1.JobStatus{Failed: 1, StartTime: &metav1.Time{Time: start}, Conditions: []batchv1.JobCondition{{
			Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded,
			LastTransitionTime: metav1.Time{Time: end}}}},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-x", Namespace: "ml", Labels: map[string]string{batchv1.ControllerUidLabel: string(uid)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec: corev1.PodSpec{NodeName: "gpu-node-1", Containers: []corev1.Container{c}},
		Status: corev1.PodStatus{Phase: corev1.PodFailed, StartTime: &metav1.Time{Time: start},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "train", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Reason: "OOMKilled", ExitCode: 137, StartedAt: metav1.Time{Time: start}, FinishedAt: metav1.Time{Time: end}}}}}},
	}
	return job, pod
}

// TestWatcherReadsPeaksFromPrometheus: serve's watcher, given a real Prometheus
// (metrics.url), reports a failed Job with the peaks of its run; with Prometheus
// stopped, the next failure is still reported, without them.
func TestWatcherReadsPeaksFromPrometheus(t *testing.T) {
	t0 := promtest.Epoch()
	labels := func(pod string, more ...promtest.Label) []promtest.Label {
		return append([]promtest.Label{{Name: "namespace", Value: "ml"}, {Name: "pod", Value: pod}}, more...)
	}
	train := promtest.Label{Name: "container", Value: "train"}
	var om strings.Builder
	for _, s := range []struct {
		metric, pod string
		labels      []promtest.Label
		value       string
		at          time.Duration
	}{
		{"container_memory_working_set_bytes", "first-x", []promtest.Label{train}, "4294967296", time.Minute},
		{"container_memory_working_set_bytes", "first-x", []promtest.Label{train}, "8589934592", 2 * time.Minute},
		{"container_memory_working_set_bytes", "second-x", []promtest.Label{train}, "8589934592", 2 * time.Minute},
		{"DCGM_FI_DEV_FB_USED", "first-x", []promtest.Label{{Name: "gpu", Value: "0"}}, "20000", time.Minute},
		{"DCGM_FI_DEV_FB_USED", "first-x", []promtest.Label{{Name: "gpu", Value: "1"}}, "30000", time.Minute},
	} {
		om.WriteString(promtest.Sample(s.metric, labels(s.pod, s.labels...), s.value, t0.Add(s.at)))
	}
	om.WriteString("# EOF\n")
	prom := promtest.Start(t, om.String())

	cfg := config.Default()
	cfg.Metrics.URL, cfg.Metrics.FailureThreshold = prom.URL, 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	usage, err := UsageSource(&cfg.Metrics, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first, firstPod := oomJob("first", t0, t0.Add(3*time.Minute))
	client := fake.NewClientset(first, firstPod)
	pub := &published{events: map[string]*failure.Event{}}
	cat := failure.DefaultCatalogue()
	w := remediate.NewWatcher(client, pub, nil, remediate.WatcherOptions{Namespaces: []string{"ml"}, LogLines: -1,
		MaxAge: time.Since(t0) + 24*time.Hour, Catalogue: &cat, Usage: usage})
	ctx, cancel := context.WithCancel(testwait.Context(t))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	testwait.For(t, "the first failure's event", &pub.changed, func() bool { return pub.get("first") != nil })
	want := failure.Usage{PeakMemoryBytes: 8 << 30, PeakGPUMemoryBytes: 30000 << 20}
	if got := pub.get("first").Failure.Usage; got != want {
		t.Errorf("the first failure's usage = %+v, want %+v", got, want)
	}

	prom.Stop()
	second, secondPod := oomJob("second", t0, t0.Add(3*time.Minute))
	if _, err := client.CoreV1().Pods("ml").Create(ctx, secondPod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.BatchV1().Jobs("ml").Create(ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the second failure's event, Prometheus stopped", &pub.changed, func() bool { return pub.get("second") != nil })
	if got := pub.get("second").Failure; got.Usage != (failure.Usage{}) || got.Reason != "OOMKilled" {
		t.Errorf("the second failure = %s with usage %+v, want OOMKilled without usage", got.Reason, got.Usage)
	}
}
