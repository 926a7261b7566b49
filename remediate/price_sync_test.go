package remediate

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
)

// keptOutcomes is an OutcomeSink that keeps the outcomes it was told.
type keptOutcomes struct {
	mu   sync.Mutex
	list []failure.Outcome
}

func (s *keptOutcomes) Finished(_ context.Context, _ AttemptJob, _ bool, o failure.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, o)
	return nil
}

// a100Catalogue prices failedJob's pod (8 cores, 64Gi, one nvidia-a100-40gb) at
// $8 + $32 + $10 = $50 an hour.
var a100Catalogue = failure.Catalogue{CPUPerCoreHour: 1, MemoryPerGiBHour: 0.5,
	GPUs: []failure.GPUModel{{Name: "nvidia-a100-40gb", MemoryGiB: 40, PerHour: 10}}}

// ranFor makes p a pod of job's template that started at from and whose
// container ended at to.
func ranFor(job *batchv1.Job, p *corev1.Pod, from, to time.Time) *corev1.Pod {
	p.Spec.NodeSelector = job.Spec.Template.Spec.NodeSelector
	p.Status.StartTime = &metav1.Time{Time: from}
	if len(p.Status.ContainerStatuses) == 0 {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "train", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{}}}}
	}
	term := p.Status.ContainerStatuses[0].State.Terminated
	term.StartedAt, term.FinishedAt = metav1.Time{Time: from}, metav1.Time{Time: to}
	return p
}

// TestSyncPricesEveryAttempt: the watcher prices the failed run its event reports,
// and the outcome of an attempt autofix created, from their pods.
func TestSyncPricesEveryAttempt(t *testing.T) {
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	t.Run("the failed run of an event", func(t *testing.T) {
		job := failedAt("llm-ft", time.Minute)
		pod := ranFor(job, oomKilled(podOf(job, "llm-ft-x", corev1.PodFailed)), end.Add(-time.Hour), end)
		pub := &events{}
		c, _ := testController(t, WatcherOptions{Catalogue: &a100Catalogue}, pub, nil, job, pod)
		if _, err := c.sync(context.Background(), jobKeyOf(job)); err != nil || len(pub.evs) != 1 {
			t.Fatalf("sync = %v, published %q; want the failure", err, pub.ids())
		}
		if f := pub.evs[0].Failure; math.Abs(f.Cost-50) > 1e-9 || f.Unpriced != "" {
			t.Errorf("event cost %v (unpriced %q), want $50: an hour of 8 cores, 64Gi and an A100", f.Cost, f.Unpriced)
		}
	})
	t.Run("the outcome of an attempt", func(t *testing.T) {
		job := failedAt("llm-ft-af2", 0)
		job.Status.Conditions[0].Type = batchv1.JobComplete
		job.Status.Conditions[0].LastTransitionTime = metav1.Time{Time: end}
		job.Status.Succeeded, job.Status.Failed = 1, 0
		job.Labels[failure.LabelManaged] = "true"
		job.Annotations[failure.AnnotationRemediation] = "k8s-job-0b1c"
		pod := ranFor(job, podOf(job, "llm-ft-af2-x", corev1.PodSucceeded), end.Add(-30*time.Minute), end)
		sink := &keptOutcomes{}
		c, _ := testController(t, WatcherOptions{Catalogue: &a100Catalogue}, &events{}, sink, job, pod)
		if _, err := c.sync(context.Background(), jobKeyOf(job)); err != nil || len(sink.list) != 1 {
			t.Fatalf("sync = %v, %d outcomes; want one", err, len(sink.list))
		}
		if o := sink.list[0]; math.Abs(o.Cost-25) > 1e-9 || o.Unpriced != "" || !o.Succeeded {
			t.Errorf("outcome cost %v (unpriced %q, succeeded %v), want $25 for half an hour, succeeded", o.Cost, o.Unpriced, o.Succeeded)
		}
	})
	t.Run("a rollout: not priced, and said so", func(t *testing.T) {
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "srv", Namespace: "ml", UID: "d1", Generation: 2, ResourceVersion: "5"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "srv", Image: "srv:2"}}}}},
			Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing,
				Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", LastUpdateTime: metav1.Now()}}}}
		pub := &events{}
		c, _ := testController(t, WatcherOptions{Catalogue: &a100Catalogue}, pub, nil, dep)
		if _, err := c.sync(context.Background(), queueKey{kind: deploymentKey, namespace: "ml", name: "srv"}); err != nil || len(pub.evs) != 1 {
			t.Fatalf("sync = %v, published %q; want the rollout's failure", err, pub.ids())
		}
		if f := pub.evs[0].Failure; f.Cost != 0 || f.Unpriced != unpricedRollout {
			t.Errorf("rollout event cost %v, unpriced %q; want 0 and %q", f.Cost, f.Unpriced, unpricedRollout)
		}
	})
	t.Run("a pod that cannot start", func(t *testing.T) {
		job := failedAt("j", 0)
		job.Status = batchv1.JobStatus{Active: 1, StartTime: &metav1.Time{Time: end}}
		p := podOf(job, "j-x", corev1.PodPending)
		p.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "train",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
		p.Status.StartTime = &metav1.Time{Time: end}
		pub := &events{}
		c, _ := testController(t, WatcherOptions{Catalogue: &a100Catalogue}, pub, nil, job, p)
		if _, err := c.sync(context.Background(), queueKey{kind: podKey, namespace: "ml", name: "j-x"}); err != nil || len(pub.evs) != 1 {
			t.Fatalf("sync = %v, published %q; want the stuck pod's event", err, pub.ids())
		}
		if f := pub.evs[0].Failure; f.Cost != 0 || !strings.Contains(f.Unpriced, "pod j-x has not ended") {
			t.Errorf("stuck event cost %v, unpriced %q; want 0, saying the pod has not ended", f.Cost, f.Unpriced)
		}
	})
}

// TestSyncReadsOnlyPodsTheJobControls: a pod that copies a Job's controller-uid
// label, without the Job as its controller, neither prices the Job nor says why it
// failed; a stuck pod naming the Job of an earlier uid reports nothing.
func TestSyncReadsOnlyPodsTheJobControls(t *testing.T) {
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	job := failedAt("llm-ft", time.Minute)
	real := ranFor(job, oomKilled(podOf(job, "llm-ft-x", corev1.PodFailed)), end.Add(-time.Hour), end)
	forged := podOf(job, "llm-ft-forged", corev1.PodFailed)
	forged.OwnerReferences = nil
	forged.CreationTimestamp = metav1.NewTime(time.Now()) // the newest failed pod: it would say why
	forged = ranFor(job, forged, end.Add(-100*time.Hour), end)
	forged.Status.ContainerStatuses[0].State.Terminated.Reason, forged.Status.ContainerStatuses[0].State.Terminated.ExitCode = "Error", 3
	pub := &events{}
	c, _ := testController(t, WatcherOptions{Catalogue: &a100Catalogue}, pub, nil, job, real, forged)
	if _, err := c.sync(context.Background(), jobKeyOf(job)); err != nil || len(pub.evs) != 1 {
		t.Fatalf("sync = %v, published %q; want the failure", err, pub.ids())
	}
	if f := pub.evs[0].Failure; math.Abs(f.Cost-50) > 1e-9 || f.Reason != "OOMKilled" || f.ExitCode != 137 {
		t.Errorf("event: cost %v, reason %s, exit %d; want $50 for the Job's own pod, OOMKilled, 137", f.Cost, f.Reason, f.ExitCode)
	}

	stuckJob := failedAt("j", 0)
	stuckJob.Status = batchv1.JobStatus{Active: 1, StartTime: &metav1.Time{Time: end}}
	p := podOf(stuckJob, "j-x", corev1.PodPending)
	p.OwnerReferences[0].UID = "uid-of-an-earlier-j"
	p.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "train",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
	pub = &events{}
	c, _ = testController(t, WatcherOptions{Catalogue: &a100Catalogue}, pub, nil, stuckJob, p)
	if _, err := c.sync(context.Background(), queueKey{kind: podKey, namespace: "ml", name: "j-x"}); err != nil || len(pub.evs) != 0 {
		t.Errorf("sync of a pod another uid controls = %v, published %q; want nothing", err, pub.ids())
	}
}
