package remediate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

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
