package remediate

import (
	"context"
	"errors"
	"maps"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

// queuedJob is failedJob in Kueue's queue "team-a", as Kueue left it when it
// admitted it to the flavor "a100": the flavor's node label and toleration, its
// pod set label and its workload annotation merged into its pod template beside
// the user's own.
func queuedJob() *batchv1.Job {
	job := failedJob()
	job.Labels[LabelQueueName] = "team-a"
	job.Labels[LabelPriorityClass] = "high"
	suspend := false
	job.Spec.Suspend = &suspend
	spec := &job.Spec.Template.Spec
	spec.NodeSelector = map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb", "pool": "reserved", "zone": "a"}
	spec.Tolerations = []corev1.Toleration{{Key: "user", Operator: corev1.TolerationOpExists},
		{Key: "reserved", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	job.Spec.Template.Labels["kueue.x-k8s.io/podset"] = "main"
	job.Spec.Template.Annotations = map[string]string{"kueue.x-k8s.io/workload": "job-llm-ft-1a2b", "user": "note"}
	return job
}

// kueueObjects are the Workload of queuedJob (owned by ownerUID) and its flavor
// (which autofix does not read: the Workload's template is what it goes by).
func kueueObjects(ownerUID string, admitted bool) []runtime.Object {
	wl := map[string]any{
		"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
		"metadata": map[string]any{"name": "job-llm-ft-1a2b", "namespace": "ml",
			"labels":          map[string]any{labelJobUID: "0b1c"},
			"ownerReferences": []any{map[string]any{"apiVersion": "batch/v1", "kind": "Job", "name": "llm-ft", "uid": ownerUID, "controller": true}}},
		"spec": map[string]any{"queueName": "team-a", "podSets": []any{map[string]any{"name": "main", "count": int64(1),
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"team": "nlp"}, "annotations": map[string]any{"user": "note"}},
				"spec": map[string]any{
					// What the user wrote: zone=a, and the GPU model the flavor's label repeats.
					"nodeSelector": map[string]any{"zone": "a", "nvidia.com/gpu.product": "nvidia-a100-40gb"},
					"tolerations":  []any{map[string]any{"key": "user", "operator": "Exists"}},
					"containers":   []any{map[string]any{"name": "train", "image": "train:1"}}}}}}},
	}
	if admitted {
		wl["status"] = map[string]any{"admission": map[string]any{"clusterQueue": "cq", "podSetAssignments": []any{
			map[string]any{"name": "main", "flavors": map[string]any{"cpu": "a100", "memory": "a100", "nvidia.com/gpu": "a100"}}}}}
	}
	flavor := map[string]any{
		"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": map[string]any{"name": "a100"},
		"spec": map[string]any{"nodeLabels": map[string]any{"pool": "reserved", "nvidia.com/gpu.product": "nvidia-a100-40gb"},
			"tolerations": []any{map[string]any{"key": "reserved", "operator": "Equal", "value": "true", "effect": "NoSchedule"}}},
	}
	return []runtime.Object{&unstructured.Unstructured{Object: wl}, &unstructured.Unstructured{Object: flavor}}
}

func newKueue(objs ...runtime.Object) *Kueue {
	return NewKueue(dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{workloadGVR: "WorkloadList"}, objs...))
}

func TestNewAttemptKeepsKueueQueue(t *testing.T) {
	s := NewSubmitter(fake.NewClientset(), SubmitterOptions{})
	for _, tc := range []struct {
		name        string
		job         *batchv1.Job
		wantSuspend bool
	}{
		{"queued", queuedJob(), true},
		{"not queued", failedJob(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.NewAttempt(tc.job, submission())
			if err != nil {
				t.Fatal(err)
			}
			suspended := got.Spec.Suspend != nil && *got.Spec.Suspend
			if suspended != tc.wantSuspend {
				t.Errorf("suspended = %v, want %v (a queued Job is created for Kueue to admit)", suspended, tc.wantSuspend)
			}
			for _, l := range []string{LabelQueueName, LabelPriorityClass} {
				if got.Labels[l] != tc.job.Labels[l] {
					t.Errorf("label %s = %q, want %q", l, got.Labels[l], tc.job.Labels[l])
				}
			}
		})
	}
}

// TestKueueWithoutInjected: the fix of an admitted queued Job is restored from its
// Workload's copy of the pod template; an admitted Job whose Workload is gone (no
// Workload of its uid: TestAdmittedJobWithoutItsWorkloadIsNotCopied) is refused.
func TestKueueWithoutInjected(t *testing.T) {
	asAdmitted := map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb", "pool": "reserved", "zone": "a"}
	for _, tc := range []struct {
		name      string
		objs      []runtime.Object
		job       func() *batchv1.Job
		wantNodes map[string]string
		wantTols  int
		restored  bool // labels and annotations as before the admission
	}{
		// pool=reserved, the reserved toleration, the pod set label and the workload
		// annotation came with the admission; zone=a, the GPU model and the rest were
		// the user's (the Workload's template has them).
		{"admitted", kueueObjects("0b1c", true), queuedJob,
			map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb", "zone": "a"}, 1, true},
		{"not admitted", kueueObjects("0b1c", false), queuedJob, asAdmitted, 2, false},

		{"not queued", kueueObjects("0b1c", true), func() *batchv1.Job {
			j := queuedJob()
			delete(j.Labels, LabelQueueName)
			return j
		}, asAdmitted, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := tc.job()
			before := job.DeepCopy()
			got, err := newKueue(tc.objs...).withoutInjected(context.Background(), job)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := got.Spec.Template
			if !maps.Equal(tmpl.Spec.NodeSelector, tc.wantNodes) || len(tmpl.Spec.Tolerations) != tc.wantTols {
				t.Errorf("node selector %v, %d tolerations; want %v, %d", tmpl.Spec.NodeSelector, len(tmpl.Spec.Tolerations), tc.wantNodes, tc.wantTols)
			}
			_, podset := tmpl.Labels["kueue.x-k8s.io/podset"]
			_, wl := tmpl.Annotations["kueue.x-k8s.io/workload"]
			if podset == tc.restored || wl == tc.restored || tmpl.Annotations["user"] != "note" || tmpl.Labels["team"] != "nlp" ||
				tmpl.Labels[batchv1.ControllerUidLabel] != "0b1c" {
				t.Errorf("template labels %v annotations %v; want Kueue's gone %v, the user's and the Job controller's kept",
					tmpl.Labels, tmpl.Annotations, tc.restored)
			}
			if !maps.Equal(job.Spec.Template.Spec.NodeSelector, before.Spec.Template.Spec.NodeSelector) ||
				!maps.Equal(job.Spec.Template.Annotations, before.Spec.Template.Annotations) {
				t.Error("the failed Job given was changed")
			}
		})
	}
}

func TestJobsCreateFromQueued(t *testing.T) {
	client := fake.NewClientset()
	jobs, err := NewJobs(client, AdapterOptions{Kueue: newKueue(kueueObjects("0b1c", true)...)})
	if err != nil {
		t.Fatal(err)
	}
	sub := submission()
	sub.Option.Resources.GPUType = "" // the same model
	if err := jobs.CreateFrom(context.Background(), sub, Verified{Base: queuedJob()}); err != nil {
		t.Fatal(err)
	}
	got, err := client.BatchV1().Jobs("ml").Get(context.Background(), sub.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb", "zone": "a"}
	if !maps.Equal(got.Spec.Template.Spec.NodeSelector, want) || got.Spec.Suspend == nil || !*got.Spec.Suspend ||
		got.Spec.Template.Annotations["kueue.x-k8s.io/workload"] != "" ||
		got.Labels[LabelQueueName] != "team-a" || got.Labels[failure.LabelManaged] != "true" {
		t.Errorf("attempt: node selector %v (want %v), suspend %v, labels %v", got.Spec.Template.Spec.NodeSelector, want,
			got.Spec.Suspend, got.Labels)
	}
}

// TestJobSetWithoutInjected: a queued JobSet's fix restores each replicated job's
// pod template from its pod set in the Workload (named after the replicated job).
func TestJobSetWithoutInjected(t *testing.T) {
	failed := failedJobSet()
	workers := &failed.Spec.ReplicatedJobs[1].Template.Spec.Template
	workers.Spec.NodeSelector = map[string]string{"pool": "reserved"}
	workers.Annotations = map[string]string{"kueue.x-k8s.io/workload": "jobset-llm-1a2b"}
	wl := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
		"metadata": map[string]any{"name": "jobset-llm-1a2b", "namespace": "ml", "labels": map[string]any{labelJobUID: string(failed.UID)},
			"ownerReferences": []any{map[string]any{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": "llm",
				"uid": string(failed.UID), "controller": true}}},
		"spec": map[string]any{"podSets": []any{
			map[string]any{"name": "workers", "count": int64(2), "template": map[string]any{"spec": map[string]any{
				"containers": []any{map[string]any{"name": "train", "image": "trainer:1"}}}}}}},
		"status": map[string]any{"admission": map[string]any{"clusterQueue": "cq", "podSetAssignments": []any{
			map[string]any{"name": "workers", "flavors": map[string]any{"memory": "reserved"}}}}},
	}}
	got, err := newKueue(wl).jobSetWithoutInjected(context.Background(), failed)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := got.Spec.ReplicatedJobs[1].Template.Spec.Template
	if len(tmpl.Spec.NodeSelector) != 0 || len(tmpl.Annotations) != 0 {
		t.Errorf("workers' template: node selector %v, annotations %v; want what the admission added gone", tmpl.Spec.NodeSelector, tmpl.Annotations)
	}
	if workers.Spec.NodeSelector["pool"] != "reserved" {
		t.Error("the failed JobSet given was changed")
	}
	// The driver has no pod set in this Workload: left as it was.
	if d := got.Spec.ReplicatedJobs[0].Template.Spec.Template; d.Spec.Containers[0].Image != "driver:1" {
		t.Errorf("driver's template changed: %+v", d)
	}
}

// TestKueueWithoutInjectedRefusesAGoneWorkload: an admitted Job (its template bears
// Kueue's workload annotation) without a Workload of its own uid cannot be restored.
func TestKueueWithoutInjectedRefusesAGoneWorkload(t *testing.T) {
	for name, objs := range map[string][]runtime.Object{"workload of another object": kueueObjects("ffff", true), "no workload": nil} {
		if _, err := newKueue(objs...).withoutInjected(context.Background(), queuedJob()); !errors.Is(err, ErrCannotSubmit) {
			t.Errorf("%s: withoutInjected = %v, want ErrCannotSubmit", name, err)
		}
	}
}
