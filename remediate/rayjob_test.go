package remediate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

var rayStart = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// rayJobJSON is a failed RayJob of a head and two worker groups (gpu-workers and
// cpu-workers), queued in Kueue, whose cluster is train-raycluster-abcde.
func rayJobJSON(name, uid string) string {
	end := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	return fmt.Sprintf(`{"apiVersion":"ray.io/v1","kind":"RayJob",
 "metadata":{"name":%q,"namespace":"ml","uid":%q,"resourceVersion":"41","generation":3,"creationTimestamp":"2026-12-01T10:00:00Z",
  "finalizers":["ray.io/rayjob-finalizer"],
  "labels":{"kueue.x-k8s.io/queue-name":"team-a","kueue.x-k8s.io/priority-class":"high","team":"nlp"},
  "annotations":{"autofix.io/tunables":"{\"micro_batch\":{\"role\":\"micro_batch\",\"min\":1,\"max\":512}}",
   "autofix.io/params":"{\"micro_batch\":{\"env\":\"MICRO_BATCH\"}}","note":"kept"}},
 "spec":{"entrypoint":"python train.py","runtimeEnvYAML":"pip: [torch]","shutdownAfterJobFinishes":true,"ttlSecondsAfterFinished":600,
  "futureField":{"kept":true},
  "submitterPodTemplate":{"spec":{"restartPolicy":"Never","containers":[{"name":"submit","image":"rayproject/ray:2.40"}]}},
  "rayClusterSpec":{"rayVersion":"2.40.0",
   "headGroupSpec":{"rayStartParams":{"dashboard-host":"0.0.0.0"},"template":{"spec":{"containers":[{"name":"ray-head","image":"rayproject/ray:2.40",
     "env":[{"name":"MICRO_BATCH","value":"64"}],"resources":{"limits":{"cpu":"2","memory":"8Gi"},"requests":{"cpu":"2","memory":"8Gi"}}}]}}},
   "workerGroupSpecs":[
    {"groupName":"gpu-workers","replicas":2,"minReplicas":1,"maxReplicas":4,"rayStartParams":{},"scaleStrategy":{"workersToDelete":["w-1"]},
     "template":{"spec":{"containers":[{"name":"ray-worker","image":"rayproject/ray:2.40-gpu","env":[{"name":"MICRO_BATCH","value":"64"}],
      "resources":{"limits":{"cpu":"8","memory":"16Gi","nvidia.com/gpu":"1"},"requests":{"cpu":"8","memory":"16Gi","nvidia.com/gpu":"1"}}}]}}},
    {"groupName":"cpu-workers","replicas":1,"minReplicas":1,"maxReplicas":1,"rayStartParams":{},
     "template":{"spec":{"containers":[{"name":"ray-worker","image":"rayproject/ray:2.40",
      "resources":{"limits":{"cpu":"4","memory":"4Gi"},"requests":{"cpu":"4","memory":"4Gi"}}}]}}}]}},
 "status":{"jobDeploymentStatus":"Failed","jobStatus":"FAILED","reason":"AppFailed","message":"Job entrypoint command failed with exit code 1",
  "rayClusterName":"train-raycluster-abcde","jobId":"train-xyz","startTime":"2026-12-01T10:01:00Z","endTime":%q}}`, name, uid, end)
}

func failedRayJob() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON([]byte(rayJobJSON("train", "ray-uid-1"))); err != nil {
		panic(err)
	}
	return u
}

// rayPod is a pod of the cluster train-raycluster-abcde in group (RayHeadGroup or
// a worker group), whose container ended at end with exit and reason (a zero end:
// running); restarted puts that end in the last state, as a restarted container's.
func rayPod(name, group string, end time.Time, exit int32, reason string, restarted bool) *corev1.Pod {
	nodeType, label := "worker", group
	if group == RayHeadGroup {
		nodeType, label = "head", "headgroup"
	}
	start := metav1.NewTime(rayStart.Add(2 * time.Minute))
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", CreationTimestamp: metav1.NewTime(rayStart.Add(time.Minute)),
			Labels: map[string]string{LabelRayCluster: "train-raycluster-abcde", LabelRayNodeType: nodeType, LabelRayGroup: label},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "ray.io/v1", Kind: "RayCluster", Name: "train-raycluster-abcde",
				UID: "rc-uid", Controller: new(true)}}},
		Spec: corev1.PodSpec{NodeName: "node-3", Containers: []corev1.Container{{Name: "ray", Image: "rayproject/ray:2.40",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"),
				corev1.ResourceMemory: resource.MustParse("16Gi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "ray", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
	if end.IsZero() {
		return p
	}
	term := &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason, StartedAt: start, FinishedAt: metav1.NewTime(end)}
	if restarted {
		p.Status.ContainerStatuses[0].LastTerminationState.Terminated = term
		p.Status.ContainerStatuses[0].RestartCount = 1
	} else {
		p.Status.Phase = corev1.PodFailed
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: term}
	}
	return p
}

// rayScene is the cluster of the failed RayJob: a gpu worker OOM-killed first
// (restarted), then the head failed when it lost the worker, and a healthy cpu
// worker.
func rayScene() []runtime.Object {
	t0 := rayStart.Add(10 * time.Minute)
	return []runtime.Object{
		rayPod("train-raycluster-abcde-head-x", RayHeadGroup, t0.Add(30*time.Second), 1, "Error", false),
		rayPod("train-raycluster-abcde-gpu-workers-a", "gpu-workers", t0, 137, "OOMKilled", true),
		rayPod("train-raycluster-abcde-cpu-workers-b", "cpu-workers", time.Time{}, 0, "", false),
		// Not the cluster's: another controller's pod with a copied label.
		func() runtime.Object {
			p := rayPod("impostor", "gpu-workers", rayStart, 137, "OOMKilled", false)
			p.OwnerReferences = nil
			return p
		}(),
	}
}

// rayDynamic is a fake dynamic client that serves RayJobs, holding objs.
func rayDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{rayJobGVR: "RayJobList"}, objs...)
}

func rayTestController(pub Publisher, sink OutcomeSink, o WatcherOptions, objs ...runtime.Object) *rayJobController {
	if o.LogLines == 0 {
		o.LogLines = -1
	}
	return &rayJobController{Watcher: newWatcher(fake.NewClientset(objs...), pub, sink, o)}
}

func parsed(t *testing.T, u *unstructured.Unstructured) *rayJob {
	t.Helper()
	rj, err := parseRayJob(u)
	if err != nil {
		t.Fatal(err)
	}
	return rj
}

func TestRayRootCause(t *testing.T) {
	rj := parsed(t, failedRayJob())
	objs := rayScene()
	var pods []*corev1.Pod
	for _, o := range objs[:3] {
		pods = append(pods, o.(*corev1.Pod))
	}
	headOnly := []*corev1.Pod{pods[0], pods[2]}
	for _, tc := range []struct {
		name       string
		pods       []*corev1.Pod
		pod, group string
	}{
		{"the OOM-killed worker, not the head that failed after it", pods, "train-raycluster-abcde-gpu-workers-a", "gpu-workers"},
		{"the head when it failed alone", headOnly, "train-raycluster-abcde-head-x", RayHeadGroup},
		{"none when no pod failed", pods[2:], "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, g := rayRootCause(rj, tc.pods)
			name := ""
			if p != nil {
				name = p.Name
			}
			if name != tc.pod || g != tc.group {
				t.Errorf("rayRootCause = %q, %q; want %q, %q", name, g, tc.pod, tc.group)
			}
		})
	}
}

func TestSyncRayJobPublishesOneEventFromTheFirstFailedPod(t *testing.T) {
	rj := parsed(t, failedRayJob())
	pub := &events{}
	cat := failure.DefaultCatalogue()
	c := rayTestController(pub, nil, WatcherOptions{Catalogue: &cat}, rayScene()...)
	for range 2 {
		if err := c.sync(context.Background(), rj); err != nil {
			t.Fatal(err)
		}
	}
	if got := pub.ids(); !slices.Equal(got, []string{"k8s-rayjob-ray-uid-1"}) {
		t.Fatalf("published %v, want the RayJob's one event", got)
	}
	j, f := pub.evs[0].Job, pub.evs[0].Failure
	if j.Name != "train" || j.Kind != failure.Training || j.Image != "rayproject/ray:2.40-gpu" || j.Resources.MemoryBytes != 16<<30 || j.Resources.GPU != 1 {
		t.Errorf("event job = %+v; want RayJob train, training, the gpu workers' image, 16Gi and a GPU", j)
	}
	if j.Labels[LabelRayGroup] != "gpu-workers" || j.Labels[LabelRayNodeType] != "worker" || j.Labels[LabelFailedPod] != "train-raycluster-abcde-gpu-workers-a" ||
		j.Labels[LabelQueueName] != "team-a" {
		t.Errorf("event labels = %v; want the group gpu-workers, its pod and the RayJob's own", j.Labels)
	}
	if j.Params["micro_batch"] != "64" {
		t.Errorf("params %v; want the declared micro_batch at 64", j.Params)
	}
	if f.Reason != "OOMKilled" || f.ExitCode != 137 || f.Node != "node-3" {
		t.Errorf("failure = %s, exit %d on %q; want the worker's OOMKilled 137 on node-3, not the RayJob's AppFailed", f.Reason, f.ExitCode, f.Node)
	}
	if f.Cost <= 0 || f.Unpriced != "" {
		t.Errorf("cost %g, unpriced %q; want every pod priced (the one still running to the RayJob's end)", f.Cost, f.Unpriced)
	}
}

func TestSyncRayJobWithoutAFailedPodReportsItsStatus(t *testing.T) {
	rj := parsed(t, failedRayJob())
	pub := &events{}
	c := rayTestController(pub, nil, WatcherOptions{}, rayScene()[2])
	if err := c.sync(context.Background(), rj); err != nil {
		t.Fatal(err)
	}
	if len(pub.evs) != 1 {
		t.Fatalf("published %v, want one event", pub.ids())
	}
	j, f := pub.evs[0].Job, pub.evs[0].Failure
	if f.Reason != "AppFailed" || f.Message != "Job entrypoint command failed with exit code 1" || f.DurationSeconds <= 0 {
		t.Errorf("failure = %+v; want the RayJob's reason, message and run time", f)
	}
	if j.Labels[LabelRayGroup] != RayHeadGroup || j.Labels[LabelRayNodeType] != "head" || j.Resources.MemoryBytes != 8<<30 {
		t.Errorf("event job = %+v; want the head's configuration (where the driver runs)", j)
	}
}

func TestSyncRayJobLeavesOthers(t *testing.T) {
	running := parsed(t, failedRayJob())
	running.Status.JobDeploymentStatus, running.Status.JobStatus = "Running", "RUNNING"
	owned := parsed(t, failedRayJob())
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "ray.io/v1", Kind: "RayCronJob", Name: "nightly", UID: "c", Controller: new(true)}}
	for name, rj := range map[string]*rayJob{"running": running, "a RayCronJob's": owned} {
		pub := &events{}
		if err := rayTestController(pub, nil, WatcherOptions{}).sync(context.Background(), rj); err != nil {
			t.Fatal(err)
		}
		if len(pub.evs) != 0 {
			t.Errorf("%s: published %v", name, pub.ids())
		}
	}
}

func TestSyncRayJobReportsAnAttemptsOutcomeOnce(t *testing.T) {
	for _, tc := range []struct {
		deployment, job, want string
	}{
		{"Complete", "SUCCEEDED", "ml/train-af2 succeeded"},
		{"Failed", "FAILED", "ml/train-af2 failed"},
	} {
		rj := parsed(t, failedRayJob())
		rj.Name, rj.UID = "train-af2", "ray-uid-2"
		rj.Labels[failure.LabelManaged], rj.Labels[failure.LabelAttempt] = "true", "2"
		rj.Annotations[failure.AnnotationRemediation] = "k8s-rayjob-ray-uid-1"
		rj.Annotations[AnnotationRayGroup] = "gpu-workers"
		rj.Status.JobDeploymentStatus, rj.Status.JobStatus = tc.deployment, tc.job
		sink := &outcomes{}
		c := rayTestController(&events{}, sink, WatcherOptions{}, rayScene()...)
		for range 2 {
			if err := c.sync(context.Background(), rj); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(sink.jobs, []string{tc.want}) {
			t.Errorf("%s: outcomes %v, want %q once", tc.deployment, sink.jobs, tc.want)
		}
	}
}

func TestAdaptersRouteRayJobEvents(t *testing.T) {
	if got := EventKind("k8s-rayjob-u"); got != KindRayJob {
		t.Errorf("EventKind(k8s-rayjob-u) = %s, want %s", got, KindRayJob)
	}
	jobs, _ := NewJobs(fake.NewClientset(), AdapterOptions{})
	only, _ := NewAdapters(jobs)
	_, err := only.Verify(context.Background(), &failure.Event{ID: "k8s-rayjob-u", Job: failure.Job{Namespace: "ml", Name: "train", UID: "u"}})
	if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "kubernetes.kinds") {
		t.Errorf("a RayJob event with RayJob not enabled: %v, want ErrUnverified naming kubernetes.kinds", err)
	}
}

// TestRayJobsSubmitterJobIsNotFixedAlone: the Job a RayJob submits its entrypoint
// with is the RayJob's; a copy of it would submit to a cluster it does not own. So
// is a Job an Argo Workflow's resource step made the Workflow's.
func TestRayJobsSubmitterJobIsNotFixedAlone(t *testing.T) {
	for _, owner := range []metav1.OwnerReference{
		{APIVersion: "ray.io/v1", Kind: "RayJob", Name: "train", UID: "ray-uid-1", Controller: new(true)},
		{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: "pipe", UID: "wf-uid-1", Controller: new(true)},
	} {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: "ml", UID: "job-uid", OwnerReferences: []metav1.OwnerReference{owner}},
			Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}}
		v, _ := NewVerifier(fake.NewClientset(job), VerifierOptions{})
		_, err := v.Verify(context.Background(), &failure.Event{ID: JobEventID(job), Job: failure.Job{Namespace: "ml", Name: "train", UID: "job-uid"}})
		if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), owner.Kind) {
			t.Errorf("Verify of a %s's Job = %v, want ErrUnverified naming the %s", owner.Kind, err, owner.Kind)
		}
	}
}

func TestSyncRayJobOnAnExistingClusterReadsNoPods(t *testing.T) {
	u := failedRayJob()
	unstructured.RemoveNestedField(u.Object, "spec", "rayClusterSpec")
	_ = unstructured.SetNestedStringMap(u.Object, map[string]string{"ray.io/cluster": "train-raycluster-abcde"}, "spec", "clusterSelector")
	pub := &events{}
	cat := failure.DefaultCatalogue()
	if err := rayTestController(pub, nil, WatcherOptions{Catalogue: &cat}, rayScene()...).sync(context.Background(), parsed(t, u)); err != nil {
		t.Fatal(err)
	}
	if len(pub.evs) != 1 {
		t.Fatalf("published %v, want one event", pub.ids())
	}
	j, f := pub.evs[0].Job, pub.evs[0].Failure
	if f.Reason != "AppFailed" || j.Labels[LabelRayGroup] != "" || j.Labels[LabelFailedPod] != "" || !strings.Contains(f.Unpriced, "existing RayCluster") {
		t.Errorf("event: failure %+v, labels %v; want the RayJob's status, no group nor pod of the cluster it does not own", f, j.Labels)
	}
}
