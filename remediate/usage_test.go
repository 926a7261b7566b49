package remediate

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
)

// usages is a UsageSource that answers usage (and err) and keeps the queries.
type usages struct {
	mu      sync.Mutex
	queries []UsageQuery
	usage   failure.Usage
	err     error
}

func (u *usages) Usage(_ context.Context, q UsageQuery) (failure.Usage, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.queries = append(u.queries, q)
	return u.usage, u.err
}

func TestUsageQuery(t *testing.T) {
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	job := failedAt("llm-ft", 0)
	first := ranFor(job, podOf(job, "llm-ft-a", corev1.PodFailed), end.Add(-time.Hour), end.Add(-40*time.Minute))
	second := ranFor(job, podOf(job, "llm-ft-b", corev1.PodFailed), end.Add(-30*time.Minute), end.Add(-time.Minute))
	never := podOf(job, "llm-ft-c", corev1.PodPending) // never admitted to a node
	killed := ranFor(job, podOf(job, "llm-ft-d", corev1.PodFailed), end.Add(-20*time.Minute), time.Time{})
	killed.Status.ContainerStatuses[0].State.Terminated = nil // killed with its Job: no end of its own
	sidecarFirst := job.DeepCopy()
	sidecarFirst.Spec.Template.Spec.Containers = append([]corev1.Container{{Name: "proxy"}}, sidecarFirst.Spec.Template.Spec.Containers...)
	sidecarFirst.Annotations[failure.AnnotationContainer] = "train"
	cpuOnly := job.DeepCopy()
	delete(cpuOnly.Spec.Template.Spec.Containers[0].Resources.Limits, ResourceGPU)
	unknownGPU := job.DeepCopy()
	unknownGPU.Spec.Template.Spec.NodeSelector["nvidia.com/gpu.product"] = "acme-x1"
	var many []*corev1.Pod
	for i := range MaxUsagePods + 2 {
		many = append(many, ranFor(job, podOf(job, fmt.Sprintf("p%02d", i), corev1.PodFailed),
			end.Add(time.Duration(i-100)*time.Minute), end.Add(time.Duration(i-100)*time.Minute+30*time.Second)))
	}
	var latest []string
	for _, p := range many[2:] {
		latest = append(latest, p.Name)
	}
	a100 := int64(40) << 30
	tests := []struct {
		name string
		job  *batchv1.Job
		pods []*corev1.Pod
		end  time.Time
		want UsageQuery
		ok   bool
	}{
		{"the pods that started, first start to last end", job, []*corev1.Pod{second, never, first}, end,
			UsageQuery{Namespace: "ml", Pods: []string{"llm-ft-a", "llm-ft-b"}, Container: "train", Start: end.Add(-time.Hour),
				End: end.Add(-time.Minute), GPUs: 1, GPUType: "nvidia-a100-40gb", GPUMemoryBytes: a100}, true},
		{"a pod without an end ends with the Job", job, []*corev1.Pod{first, killed}, end,
			UsageQuery{Namespace: "ml", Pods: []string{"llm-ft-a", "llm-ft-d"}, Container: "train", Start: end.Add(-time.Hour),
				End: end, GPUs: 1, GPUType: "nvidia-a100-40gb", GPUMemoryBytes: a100}, true},
		{"the main container of the annotation", sidecarFirst, []*corev1.Pod{first}, end,
			UsageQuery{Namespace: "ml", Pods: []string{"llm-ft-a"}, Container: "train", Start: end.Add(-time.Hour),
				End: end.Add(-40 * time.Minute), GPUs: 1, GPUType: "nvidia-a100-40gb", GPUMemoryBytes: a100}, true},
		{"no GPUs", cpuOnly, []*corev1.Pod{first}, end,
			UsageQuery{Namespace: "ml", Pods: []string{"llm-ft-a"}, Container: "train", Start: end.Add(-time.Hour),
				End: end.Add(-40 * time.Minute), GPUType: "nvidia-a100-40gb"}, true},
		{"a GPU model of unknown memory", unknownGPU, []*corev1.Pod{first}, end,
			UsageQuery{Namespace: "ml", Pods: []string{"llm-ft-a"}, Container: "train", Start: end.Add(-time.Hour),
				End: end.Add(-40 * time.Minute), GPUs: 1, GPUType: "acme-x1"}, true},
		{"the latest pods of many", job, many, end,
			UsageQuery{Namespace: "ml", Pods: latest, Container: "train", Start: end.Add(-98 * time.Minute),
				End: end.Add(-35*time.Minute + 30*time.Second), GPUs: 1, GPUType: "nvidia-a100-40gb", GPUMemoryBytes: a100}, true},
		{"no pod started", job, []*corev1.Pod{never}, end, UsageQuery{}, false},
		{"no pods", job, nil, end, UsageQuery{}, false},
		{"a pod still running", job, []*corev1.Pod{killed}, time.Time{}, UsageQuery{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := usageQuery(tt.job, tt.pods, tt.end, "nvidia.com/gpu.product", &a100Catalogue)
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("usageQuery() = %+v, %v\nwant %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestSyncMeasuresEveryRun: the failed run of an event and the outcome of an
// attempt carry the source's peaks; an attempt that failed is looked up once for
// both; a failed lookup, or none at all, leaves them out and the run is reported.
func TestSyncMeasuresEveryRun(t *testing.T) {
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	peaks := failure.Usage{PeakMemoryBytes: 63 << 30, PeakGPUMemoryBytes: 39 << 30, PeakEphemeralStorageBytes: 2 << 30}
	failedJob := func(name string) *batchv1.Job {
		job := failedAt(name, time.Minute)
		job.Status.Conditions[0].LastTransitionTime = metav1.Time{Time: end}
		return job
	}
	podOfRun := func(job *batchv1.Job) *corev1.Pod {
		return ranFor(job, oomKilled(podOf(job, "llm-ft-x", corev1.PodFailed)), end.Add(-time.Hour), end)
	}
	failed := func() (*batchv1.Job, *corev1.Pod) {
		job := failedJob("llm-ft")
		return job, podOfRun(job)
	}
	attempt := func(succeeded bool) (*batchv1.Job, *corev1.Pod) {
		job := failedJob("llm-ft-af2")
		pod := podOfRun(job)
		job.Labels[failure.LabelManaged] = "true"
		job.Annotations[failure.AnnotationRemediation] = "k8s-job-0b1c"
		if succeeded {
			job.Status.Conditions[0].Type = batchv1.JobComplete
			job.Status.Succeeded, job.Status.Failed = 1, 0
			pod.Status.Phase = corev1.PodSucceeded
		}
		return job, pod
	}
	tests := []struct {
		name         string
		source       *usages
		job          *batchv1.Job
		pod          *corev1.Pod
		wantEvent    bool
		wantOutcome  bool
		wantUsage    failure.Usage
		wantLookups  int
		withoutUsage bool // no UsageSource at all
	}{
		{"a failed Job's event", &usages{usage: peaks}, nil, nil, true, false, peaks, 1, false},
		{"a succeeded attempt's outcome", &usages{usage: peaks}, nil, nil, false, true, peaks, 1, false},
		{"a failed attempt: event and outcome, one lookup", &usages{usage: peaks}, nil, nil, true, true, peaks, 1, false},
		{"the source fails: reported without peaks", &usages{usage: failure.Usage{PeakMemoryBytes: 1 << 30}, err: errors.New("prometheus: connection refused")},
			nil, nil, true, true, failure.Usage{PeakMemoryBytes: 1 << 30}, 1, false},
		{"peaks no run can have are dropped", &usages{usage: failure.Usage{PeakMemoryBytes: -1, PeakGPUMemoryBytes: 2 << 50, PeakEphemeralStorageBytes: 1 << 30}},
			nil, nil, true, false, failure.Usage{PeakEphemeralStorageBytes: 1 << 30}, 1, false},
		{"no source", nil, nil, nil, true, true, failure.Usage{}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch {
			case tt.wantEvent && tt.wantOutcome:
				tt.job, tt.pod = attempt(false)
			case tt.wantOutcome:
				tt.job, tt.pod = attempt(true)
			default:
				tt.job, tt.pod = failed()
			}
			pub, sink := &events{}, &keptOutcomes{}
			o := WatcherOptions{Catalogue: &a100Catalogue}
			if !tt.withoutUsage {
				o.Usage = tt.source
			}
			c, _ := testController(t, o, pub, sink, tt.job, tt.pod)
			if _, err := c.sync(context.Background(), jobKeyOf(tt.job)); err != nil {
				t.Fatalf("sync = %v", err)
			}
			if got := len(pub.evs) == 1; got != tt.wantEvent {
				t.Fatalf("published %q, want an event: %v", pub.ids(), tt.wantEvent)
			}
			if got := len(sink.list) == 1; got != tt.wantOutcome {
				t.Fatalf("%d outcomes, want one: %v", len(sink.list), tt.wantOutcome)
			}
			if tt.wantEvent && pub.evs[0].Failure.Usage != tt.wantUsage {
				t.Errorf("event usage = %+v, want %+v", pub.evs[0].Failure.Usage, tt.wantUsage)
			}
			if tt.wantOutcome && sink.list[0].Usage != tt.wantUsage {
				t.Errorf("outcome usage = %+v, want %+v", sink.list[0].Usage, tt.wantUsage)
			}
			if tt.source != nil && len(tt.source.queries) != tt.wantLookups {
				t.Errorf("%d lookups, want %d", len(tt.source.queries), tt.wantLookups)
			}
			if tt.wantLookups > 0 {
				q := tt.source.queries[0]
				if q.Namespace != "ml" || !reflect.DeepEqual(q.Pods, []string{"llm-ft-x"}) || q.Container != "train" ||
					!q.Start.Equal(end.Add(-time.Hour)) || !q.End.Equal(end) || q.GPUs != 1 || q.GPUMemoryBytes != 40<<30 {
					t.Errorf("query = %+v, want llm-ft-x's main container over its hour, one 40 GiB GPU", q)
				}
			}
		})
	}
}
