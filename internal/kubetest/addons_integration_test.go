//go:build integration

package kubetest

import (
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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/simcluster"
)

var jobGVR = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// TestIntegrationJobSet: the real JobSet controller makes a JobSet's child Jobs, and
// one child's failed pod (the test kubelet's OOM kill) fails the JobSet, naming
// that child.
func TestIntegrationJobSet(t *testing.T) {
	c := Start(t)
	c.StartJobSet(t)
	RunKubelet(t, c.Client, func(p *corev1.Pod) simcluster.Outcome {
		if p.Labels["jobset.sigs.k8s.io/replicatedjob-name"] == "workers" && p.Labels["jobset.sigs.k8s.io/job-index"] == "1" {
			return simcluster.Outcome{Reason: "OOMKilled", ExitCode: 137}
		}
		return simcluster.Outcome{Succeed: true}
	})
	ctx := testwait.Context(t)
	// The child Jobs are watched from before the JobSet exists: the controller
	// deletes the ones still running once the JobSet has failed.
	selector := metav1.ListOptions{LabelSelector: jobSetNameLabel + "=train"}
	before, err := c.Client.BatchV1().Jobs("default").List(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	js, err := c.Dynamic.Resource(JobSetGVR).Namespace("default").Create(ctx, jobSet("train", map[string]int64{"driver": 1, "workers": 2}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	selector.ResourceVersion = before.ResourceVersion
	w, err := c.Client.BatchV1().Jobs("default").Watch(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"train-driver-0", "train-workers-0", "train-workers-1"}
	var seen []string
	_, err = watchtools.UntilWithoutRetry(ctx, w, func(ev watch.Event) (bool, error) {
		j, ok := ev.Object.(*batchv1.Job)
		if !ok || ev.Type != watch.Added {
			return false, nil
		}
		if owner := metav1.GetControllerOf(j); owner == nil || owner.UID != js.GetUID() {
			t.Errorf("job %s: controller %v, want the JobSet %s", j.Name, owner, js.GetUID())
		}
		seen = append(seen, j.Name)
		return len(seen) == len(want), nil
	})
	if err != nil {
		t.Fatalf("the JobSet's child Jobs: saw %v, want %v: %v", seen, want, err)
	}
	if slices.Sort(seen); !slices.Equal(seen, want) {
		t.Errorf("child Jobs = %v, want %v", seen, want)
	}
	failed := c.Await(t, JobSetGVR, "default", "JobSet train Failed", func(u *unstructured.Unstructured) bool {
		return u.GetName() == "train" && conditionIs(u, "Failed", "True")
	})
	if msg, _ := Condition(failed, "Failed", "True"); !strings.Contains(msg, "train-workers-1") {
		t.Errorf("Failed condition's message %q does not name the failed child train-workers-1", msg)
	}
	if got, _, _ := unstructured.NestedString(failed.Object, "status", "terminalState"); got != "Failed" {
		t.Errorf("status.terminalState = %q, want Failed", got)
	}
}

// TestIntegrationKueue: the real Kueue controller admits (unsuspends) a queued Job
// within its ClusterQueue's quota, and keeps one over the quota suspended, its
// Workload's QuotaReserved condition saying why.
func TestIntegrationKueue(t *testing.T) {
	c := Start(t)
	c.StartKueue(t, KueueJobs)
	RunKubelet(t, c.Client, func(*corev1.Pod) simcluster.Outcome {
		// Running for the whole test, its Workload stays admitted while the test looks.
		return simcluster.Outcome{Succeed: true, RunFor: time.Hour}
	})
	ctx := testwait.Context(t)
	createQueues(t, c)

	uids := map[string]types.UID{}
	for name, cpu := range map[string]string{"fits": "1", "too-big": "8"} {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{QueueNameLabel: "lq"}},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "main", Image: "busybox", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}}}},
		}
		got, err := c.Client.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.Suspend == nil || !*got.Spec.Suspend {
			t.Errorf("job %s was created unsuspended: Kueue's webhook did not suspend it", name)
		}
		uids[name] = got.UID
	}

	c.Await(t, jobGVR, "default", "Job fits unsuspended", func(u *unstructured.Unstructured) bool {
		suspended, found, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
		return u.GetName() == "fits" && found && !suspended
	})
	c.Await(t, WorkloadGVR, "default", "the Workload of Job fits admitted", func(u *unstructured.Unstructured) bool {
		return ownedBy(u, uids["fits"]) && conditionIs(u, "QuotaReserved", "True") && conditionIs(u, "Admitted", "True")
	})

	pending := c.Await(t, WorkloadGVR, "default", "the Workload of Job too-big short of quota", func(u *unstructured.Unstructured) bool {
		msg, ok := Condition(u, "QuotaReserved", "False")
		return ownedBy(u, uids["too-big"]) && ok && strings.Contains(msg, "insufficient quota")
	})
	msg, _ := Condition(pending, "QuotaReserved", "False")
	t.Logf("Workload %s: QuotaReserved=False: %s", pending.GetName(), msg)
	tooBig, err := c.Client.BatchV1().Jobs("default").Get(ctx, "too-big", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tooBig.Spec.Suspend == nil || !*tooBig.Spec.Suspend {
		t.Errorf("job too-big: spec.suspend = %v with its Workload pending (%s), want true", tooBig.Spec.Suspend, msg)
	}
}

// TestIntegrationKueueJobSet: a JobSet labelled with a LocalQueue is suspended by
// Kueue's webhook, admitted within the quota, and then run by the JobSet
// controller: its child Jobs are created.
func TestIntegrationKueueJobSet(t *testing.T) {
	c := Start(t)
	c.StartJobSet(t)
	c.StartKueue(t, KueueJobSets)
	RunKubelet(t, c.Client, func(*corev1.Pod) simcluster.Outcome { return simcluster.Outcome{Succeed: true, RunFor: time.Hour} })
	createQueues(t, c)
	js := jobSet("queued", map[string]int64{"workers": 2})
	js.SetLabels(map[string]string{QueueNameLabel: "lq"})
	created, err := c.Dynamic.Resource(JobSetGVR).Namespace("default").Create(testwait.Context(t), js, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if suspended, _, _ := unstructured.NestedBool(created.Object, "spec", "suspend"); !suspended {
		t.Errorf("JobSet queued was created unsuspended: Kueue's webhook did not suspend it")
	}
	c.Await(t, JobSetGVR, "default", "JobSet queued unsuspended", func(u *unstructured.Unstructured) bool {
		suspended, found, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
		return u.GetName() == "queued" && found && !suspended
	})
	c.Await(t, WorkloadGVR, "default", "the Workload of JobSet queued admitted", func(u *unstructured.Unstructured) bool {
		return ownedBy(u, created.GetUID()) && conditionIs(u, "Admitted", "True")
	})
	for _, name := range []string{"queued-workers-0", "queued-workers-1"} {
		c.Await(t, jobGVR, "default", "Job "+name+" running", func(u *unstructured.Unstructured) bool {
			suspended, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
			return u.GetName() == name && !suspended
		})
	}
}

// createQueues makes a ResourceFlavor default-flavor, a ClusterQueue cq of 4 CPUs
// and 8 GiB over it, and a LocalQueue lq in default that feeds it, and waits until
// cq is Active.
func createQueues(t *testing.T, c *Cluster) {
	t.Helper()
	for _, q := range []struct {
		gvr schema.GroupVersionResource
		obj map[string]any
	}{
		{ResourceFlavorGVR, map[string]any{"kind": "ResourceFlavor", "metadata": map[string]any{"name": "default-flavor"}}},
		{ClusterQueueGVR, map[string]any{"kind": "ClusterQueue", "metadata": map[string]any{"name": "cq"},
			"spec": map[string]any{"namespaceSelector": map[string]any{}, "resourceGroups": []any{map[string]any{
				"coveredResources": []any{"cpu", "memory"},
				"flavors": []any{map[string]any{"name": "default-flavor", "resources": []any{
					map[string]any{"name": "cpu", "nominalQuota": "4"},
					map[string]any{"name": "memory", "nominalQuota": "8Gi"}}}}}}}}},
		{LocalQueueGVR, map[string]any{"kind": "LocalQueue", "metadata": map[string]any{"name": "lq", "namespace": "default"},
			"spec": map[string]any{"clusterQueue": "cq"}}},
	} {
		q.obj["apiVersion"] = "kueue.x-k8s.io/v1beta2"
		obj := &unstructured.Unstructured{Object: q.obj}
		if _, err := c.Dynamic.Resource(q.gvr).Namespace(obj.GetNamespace()).Create(testwait.Context(t), obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	c.Await(t, ClusterQueueGVR, "", "ClusterQueue cq Active", func(u *unstructured.Unstructured) bool {
		return u.GetName() == "cq" && conditionIs(u, "Active", "True")
	})
}

// jobSet is a JobSet whose replicated jobs (name: replicas) run one pod each that
// is not restarted.
func jobSet(name string, replicated map[string]int64) *unstructured.Unstructured {
	var rjs []any
	for _, rj := range slices.Sorted(maps.Keys(replicated)) {
		rjs = append(rjs, map[string]any{"name": rj, "replicas": replicated[rj], "template": map[string]any{
			"spec": map[string]any{"backoffLimit": int64(0), "template": map[string]any{"spec": map[string]any{
				"restartPolicy": "Never",
				"containers":    []any{map[string]any{"name": "main", "image": "busybox"}}}}}}})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     map[string]any{"replicatedJobs": rjs},
	}}
}

// ownedBy reports whether u has an owner of that UID.
func ownedBy(u *unstructured.Unstructured, uid types.UID) bool {
	for _, o := range u.GetOwnerReferences() {
		if o.UID == uid {
			return true
		}
	}
	return false
}
