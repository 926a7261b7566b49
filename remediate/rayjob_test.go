package remediate

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	"k8s.io/apimachinery/pkg/types"
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

func raySubmission() *Submission {
	return &Submission{Namespace: "ml", FailedJob: "train", FailedUID: "ray-uid-1", Name: "train-af2", Chain: "ml/train", Original: "train",
		Attempt: 2, Remediation: "k8s-rayjob-ray-uid-1", Token: "tok",
		Option: failure.Option{Resources: failure.Resources{MemoryBytes: 24 << 30}, Params: map[string]string{"micro_batch": "32"},
			AvoidNodes: []string{"node-3"}, DeadlineSeconds: 3600}}
}

// rayTemplates decodes the head's and each worker group's template of a RayJob.
func rayTemplates(t *testing.T, u *unstructured.Unstructured) map[string]*corev1.PodTemplateSpec {
	t.Helper()
	rj := parsed(t, u)
	out := map[string]*corev1.PodTemplateSpec{RayHeadGroup: rj.template(RayHeadGroup)}
	for _, wg := range rj.Spec.RayClusterSpec.WorkerGroupSpecs {
		out[wg.GroupName] = rj.template(wg.GroupName)
	}
	return out
}

func TestRayJobNewAttempt(t *testing.T) {
	a, err := NewRayJobs(fake.NewClientset(), rayDynamic(), AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failed := failedRayJob()
	got, err := a.NewAttempt(failed, "gpu-workers", raySubmission())
	if err != nil {
		t.Fatal(err)
	}
	for group, want := range map[string]struct{ mem, batch string }{
		RayHeadGroup: {"8Gi", "32"}, "gpu-workers": {"24Gi", "32"}, "cpu-workers": {"4Gi", "32"}, // the parameter reaches every Ray process
	} {
		tmpl := rayTemplates(t, got)[group]
		c := tmpl.Spec.Containers[0]
		mem := c.Resources.Limits[corev1.ResourceMemory]
		if mem.String() != want.mem || envValue(c.Env, "MICRO_BATCH") != want.batch {
			t.Errorf("group %s: memory %s, micro-batch %q; want %s, %q", group, mem.String(), envValue(c.Env, "MICRO_BATCH"), want.mem, want.batch)
		}
		if tmpl.Labels[failure.LabelManaged] != "true" || tmpl.Labels[failure.LabelAttempt] != "2" {
			t.Errorf("group %s: pod labels %v, want the chain's", group, tmpl.Labels)
		}
		if na := tmpl.Spec.Affinity; na == nil || na.NodeAffinity == nil || !strings.Contains(na.NodeAffinity.String(), "node-3") {
			t.Errorf("group %s: not kept off node-3", group)
		}
	}
	if got.GetName() != "train-af2" || got.GetLabels()[LabelQueueName] != "team-a" || got.GetLabels()[LabelPriorityClass] != "high" ||
		got.GetLabels()[failure.LabelManaged] != "true" || got.GetLabels()[failure.LabelOriginal] != "train" {
		t.Errorf("labels %v; want the RayJob's (Kueue's among them) and the chain's", got.GetLabels())
	}
	ann := got.GetAnnotations()
	if ann[AnnotationRayGroup] != "gpu-workers" || ann[failure.AnnotationRemediation] != "k8s-rayjob-ray-uid-1" || ann[failure.AnnotationAttemptToken] != "tok" ||
		ann["note"] != "kept" || ann[failure.AnnotationParams] == "" {
		t.Errorf("annotations %v; want the group, the remediation, the token and the RayJob's own", ann)
	}
	if got.GetUID() != "" || got.GetResourceVersion() != "" || len(got.GetFinalizers()) != 0 || got.GetGeneration() != 0 || got.Object["status"] != nil {
		t.Errorf("server-set fields kept: %v", got.Object["metadata"])
	}
	for _, f := range []struct {
		path []string
		want any
	}{
		{[]string{"spec", "entrypoint"}, "python train.py"},
		{[]string{"spec", "runtimeEnvYAML"}, "pip: [torch]"},
		{[]string{"spec", "shutdownAfterJobFinishes"}, true},
		{[]string{"spec", "ttlSecondsAfterFinished"}, int64(600)},
		{[]string{"spec", "futureField", "kept"}, true},
		{[]string{"spec", "suspend"}, true},
		{[]string{"spec", "activeDeadlineSeconds"}, int64(3600)},
		{[]string{"spec", "submitterPodTemplate", "spec", "containers"}, []any{map[string]any{"name": "submit", "image": "rayproject/ray:2.40"}}},
	} {
		v, _, _ := unstructured.NestedFieldNoCopy(got.Object, f.path...)
		if fmt.Sprint(v) != fmt.Sprint(f.want) {
			t.Errorf("%s = %v, want %v", strings.Join(f.path, "."), v, f.want)
		}
	}
	workers, _, _ := unstructured.NestedSlice(got.Object, "spec", "rayClusterSpec", "workerGroupSpecs")
	gpu := workers[0].(map[string]any)
	if gpu["replicas"] != int64(2) || gpu["minReplicas"] != int64(1) || gpu["maxReplicas"] != int64(4) || gpu["scaleStrategy"] != nil {
		t.Errorf("gpu workers = replicas %v min %v max %v, scale strategy %v; want 2, 1, 4 kept and no workers to delete",
			gpu["replicas"], gpu["minReplicas"], gpu["maxReplicas"], gpu["scaleStrategy"])
	}
	if md := gpu["template"].(map[string]any)["metadata"].(map[string]any); md["creationTimestamp"] != nil {
		t.Errorf("template metadata %v carries a creation time", md)
	}
	if before := rayTemplates(t, failed)["gpu-workers"].Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; before.String() != "16Gi" {
		t.Errorf("the failed RayJob was changed: its gpu workers now ask for %s", before.String())
	}
	head, err := a.NewAttempt(failed, RayHeadGroup, raySubmission())
	if err != nil {
		t.Fatal(err)
	}
	for group, want := range map[string]string{RayHeadGroup: "24Gi", "gpu-workers": "16Gi"} {
		if mem := rayTemplates(t, head)[group].Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; mem.String() != want {
			t.Errorf("head sized: group %s memory %s, want %s (head and workers sized separately)", group, mem.String(), want)
		}
	}
}

func TestRayJobNewAttemptRefuses(t *testing.T) {
	onCluster := failedRayJob()
	_ = unstructured.SetNestedStringMap(onCluster.Object, map[string]string{"ray.io/cluster": "shared"}, "spec", "clusterSelector")
	long := raySubmission()
	long.Name = strings.Repeat("x", 48)
	a, _ := NewRayJobs(fake.NewClientset(), rayDynamic(), AdapterOptions{})
	for _, tc := range []struct {
		name  string
		u     *unstructured.Unstructured
		group string
		sub   *Submission
		want  string
	}{
		{"a RayJob on an existing cluster", onCluster, RayHeadGroup, raySubmission(), "existing RayCluster"},
		{"a group it does not have", failedRayJob(), "tpu-workers", raySubmission(), `no group "tpu-workers"`},
		{"a name KubeRay refuses", failedRayJob(), RayHeadGroup, long, "47 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := a.NewAttempt(tc.u, tc.group, tc.sub); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewAttempt = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestRayJobCreateFromIsIdempotentAndNeverTakesAnothers(t *testing.T) {
	ctx := context.Background()
	failed := failedRayJob()
	dyn := rayDynamic(failed.DeepCopy())
	a, _ := NewRayJobs(fake.NewClientset(), dyn, AdapterOptions{})
	v := Verified{RayJob: failed, RayGroup: "gpu-workers"}
	for range 2 {
		if err := a.CreateFrom(ctx, raySubmission(), v); err != nil {
			t.Fatal(err)
		}
	}
	if done, err := a.Created(ctx, raySubmission()); !done || err != nil {
		t.Errorf("Created = %v, %v; want the attempt found", done, err)
	}
	list, _ := dyn.Resource(rayJobGVR).Namespace("ml").List(ctx, metav1.ListOptions{})
	if len(list.Items) != 2 {
		t.Errorf("%d RayJobs, want the failed one and one attempt", len(list.Items))
	}
	theirs := &unstructured.Unstructured{}
	theirs.SetAPIVersion("ray.io/v1")
	theirs.SetKind("RayJob")
	theirs.SetNamespace("ml")
	theirs.SetName("train-af3")
	theirs.SetLabels(map[string]string{"owner": "them"})
	dyn = rayDynamic(failed.DeepCopy(), theirs)
	a, _ = NewRayJobs(fake.NewClientset(), dyn, AdapterOptions{})
	sub := raySubmission()
	sub.Name, sub.Attempt = "train-af3", 3
	if err := a.CreateFrom(ctx, sub, v); !errors.Is(err, ErrCannotSubmit) {
		t.Errorf("CreateFrom over another's RayJob = %v, want ErrCannotSubmit", err)
	}
	for _, act := range dyn.Actions() {
		if verb := act.GetVerb(); verb != "get" && verb != "create" {
			t.Errorf("the submitter did %s %s: it only reads and creates", verb, act.GetResource().Resource)
		}
	}
	other := failedRayJob()
	other.SetUID(types.UID("someone-else"))
	if a.CreateFrom(ctx, raySubmission(), Verified{RayJob: other, RayGroup: RayHeadGroup}) == nil {
		t.Error("CreateFrom built a fix from a RayJob other than the one verified")
	}
}

func TestRayJobVerify(t *testing.T) {
	ev := func(edit func(*failure.Event)) *failure.Event {
		e := &failure.Event{ID: "k8s-rayjob-ray-uid-1", Job: failure.Job{Namespace: "ml", Name: "train", UID: "ray-uid-1",
			Labels: map[string]string{LabelRayGroup: "gpu-workers", LabelFailedPod: "train-raycluster-abcde-gpu-workers-a"}}}
		if edit != nil {
			edit(e)
		}
		return e
	}
	running := failedRayJob()
	_ = unstructured.SetNestedField(running.Object, "Running", "status", "jobDeploymentStatus")
	owned := failedRayJob()
	owned.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "ray.io/v1", Kind: "RayCronJob", Name: "nightly", UID: "c", Controller: new(true)}})
	for _, tc := range []struct {
		name  string
		rj    *unstructured.Unstructured
		pods  []runtime.Object
		ev    *failure.Event
		o     WatcherOptions
		group string
		want  string // "" verified
	}{
		{"a failed RayJob", failedRayJob(), rayScene(), ev(nil), WatcherOptions{}, "gpu-workers", ""},
		{"its pods gone, the group claimed", failedRayJob(), nil, ev(nil), WatcherOptions{}, "gpu-workers", ""},
		{"its pods gone, a group it lacks claimed", failedRayJob(), nil, ev(func(e *failure.Event) { e.Job.Labels[LabelRayGroup] = "tpu" }),
			WatcherOptions{}, RayHeadGroup, ""},
		{"an id not the RayJob's", failedRayJob(), nil, ev(func(e *failure.Event) { e.ID = "k8s-job-ray-uid-1" }), WatcherOptions{}, "", "reported as"},
		{"another uid", failedRayJob(), nil, ev(func(e *failure.Event) { e.Job.UID, e.ID = "x", "k8s-rayjob-x" }), WatcherOptions{}, "", "no RayJob"},
		{"not failed", running, nil, ev(nil), WatcherOptions{}, "", "has not failed"},
		{"a RayCronJob's", owned, nil, ev(nil), WatcherOptions{}, "", "controlled by RayCronJob"},
		{"another group claimed", failedRayJob(), rayScene(), ev(func(e *failure.Event) { e.Job.Labels[LabelRayGroup] = RayHeadGroup }),
			WatcherOptions{}, "", `"gpu-workers" failed first`},
		{"a namespace not watched", failedRayJob(), nil, ev(nil), WatcherOptions{Namespaces: []string{"other"}}, "", "not one autofix watches"},
		{"the selector", failedRayJob(), nil, ev(nil), WatcherOptions{Selector: "team=vision"}, "", "selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewRayJobs(fake.NewClientset(tc.pods...), rayDynamic(tc.rj), AdapterOptions{Watch: tc.o})
			if err != nil {
				t.Fatal(err)
			}
			v, err := a.Verify(context.Background(), tc.ev)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Verify = %v, want verified", err)
			case tc.want != "" && (!errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Verify = %v, want ErrUnverified naming %q", err, tc.want)
			case tc.want == "" && (v.RayGroup != tc.group || v.RayJob == nil || v.Job.Labels[LabelRayGroup] != tc.group):
				t.Errorf("Verify = group %q, labels %v; want %q, from the cluster", v.RayGroup, v.Job.Labels, tc.group)
			}
		})
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
// with is the RayJob's; a copy of it would submit to a cluster it does not own.
func TestRayJobsSubmitterJobIsNotFixedAlone(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: "ml", UID: "job-uid",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "ray.io/v1", Kind: "RayJob", Name: "train", UID: "ray-uid-1", Controller: new(true)}}},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}}
	v, _ := NewVerifier(fake.NewClientset(job), VerifierOptions{})
	_, err := v.Verify(context.Background(), &failure.Event{ID: JobEventID(job), Job: failure.Job{Namespace: "ml", Name: "train", UID: "job-uid"}})
	if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), "RayJob") {
		t.Errorf("Verify of a RayJob's submitter Job = %v, want ErrUnverified naming the RayJob", err)
	}
}

// TestRayJobFixOfAnAdmittedRayJobGoesWithoutWhatKueueAdded: Kueue's admission put
// its flavor's node selector on the gpu workers' template; the fix restores each
// group's template from the Workload's pod set of that name ("head" for the head).
func TestRayJobFixOfAnAdmittedRayJobGoesWithoutWhatKueueAdded(t *testing.T) {
	ctx := context.Background()
	failed := failedRayJob()
	workers, _, _ := unstructured.NestedSlice(failed.Object, "spec", "rayClusterSpec", "workerGroupSpecs")
	gpu := workers[0].(map[string]any)["template"].(map[string]any)
	gpu["spec"].(map[string]any)["nodeSelector"] = map[string]any{"pool": "reserved", "zone": "a"}
	gpu["metadata"] = map[string]any{"annotations": map[string]any{kueueWorkloadAnnotation: "rayjob-train-1"}}
	_ = unstructured.SetNestedSlice(failed.Object, workers, "spec", "rayClusterSpec", "workerGroupSpecs")
	podSet := func(name string, selector map[string]any) map[string]any {
		return map[string]any{"name": name, "count": int64(1), "template": map[string]any{
			"spec": map[string]any{"nodeSelector": selector, "containers": []any{map[string]any{"name": "ray-worker", "image": "x"}}}}}
	}
	wl := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
		"metadata": map[string]any{"name": "rayjob-train-1", "namespace": "ml", "labels": map[string]any{labelJobUID: "ray-uid-1"},
			"ownerReferences": []any{map[string]any{"apiVersion": "ray.io/v1", "kind": "RayJob", "name": "train", "uid": "ray-uid-1", "controller": true}}},
		"spec":   map[string]any{"podSets": []any{podSet("head", nil), podSet("gpu-workers", map[string]any{"zone": "a"}), podSet("cpu-workers", nil)}},
		"status": map[string]any{"admission": map[string]any{"clusterQueue": "cq"}},
	}}
	dyn := rayDynamic(failed.DeepCopy())
	a, _ := NewRayJobs(fake.NewClientset(), dyn, AdapterOptions{Kueue: newKueue(wl)})
	if err := a.CreateFrom(ctx, raySubmission(), Verified{RayJob: failed, RayGroup: "gpu-workers"}); err != nil {
		t.Fatal(err)
	}
	got, err := dyn.Resource(rayJobGVR).Namespace("ml").Get(ctx, "train-af2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := rayTemplates(t, got)["gpu-workers"]
	if !maps.Equal(tmpl.Spec.NodeSelector, map[string]string{"zone": "a"}) || tmpl.Annotations[kueueWorkloadAnnotation] != "" {
		t.Errorf("gpu workers: node selector %v, annotations %v; want the user's zone=a alone, without Kueue's workload annotation",
			tmpl.Spec.NodeSelector, tmpl.Annotations)
	}
	if mem := tmpl.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; mem.String() != "24Gi" {
		t.Errorf("gpu workers ask for %s, want the option's 24Gi", mem.String())
	}
}
