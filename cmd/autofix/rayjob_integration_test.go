//go:build integration

package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/kubetest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/service"
	"github.com/autofix/autofix/simcluster"
)

var (
	rayJobs     = schema.GroupVersionResource{Group: "ray.io", Version: "v1", Resource: "rayjobs"}
	rayClusters = schema.GroupVersionResource{Group: "ray.io", Version: "v1", Resource: "rayclusters"}
)

// playKubeRay does what KubeRay's operator does with the RayJobs of ns that are
// not suspended, until the test ends: it creates the RayJob's RayCluster (owned by
// it, from its rayClusterSpec) and the cluster's head and worker pods (named,
// labelled and owned as the operator does; the test kubelet runs them), and
// writes the RayJob's status: Running with its cluster's name, then Failed
// (AppFailed) once a pod of the cluster failed, or Complete once every pod ran to
// its end. (The real operator needs the Ray dashboard on the head pod to submit
// the job and follow it: docs/kubernetes.md, "RayJob".)
func playKubeRay(t *testing.T, kube kubernetes.Interface, dyn dynamic.Interface, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			list, err := dyn.Resource(rayJobs).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range list.Items {
					if err := reconcileRayJob(ctx, kube, dyn, &list.Items[i]); err != nil && ctx.Err() == nil {
						t.Logf("the test's KubeRay: rayjob %s: %v (it tries again)", list.Items[i].GetName(), err)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func reconcileRayJob(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, rj *unstructured.Unstructured) error {
	status, _, _ := unstructured.NestedString(rj.Object, "status", "jobDeploymentStatus")
	if selector, _, _ := unstructured.NestedStringMap(rj.Object, "spec", "clusterSelector"); len(selector) > 0 {
		return nil // it runs on an existing cluster: the test writes its status
	}
	if suspended, _, _ := unstructured.NestedBool(rj.Object, "spec", "suspend"); suspended || status == "Failed" || status == "Complete" {
		return nil
	}
	clusterSpec, _, _ := unstructured.NestedMap(rj.Object, "spec", "rayClusterSpec")
	name := rj.GetName() + "-" + string(rj.GetUID())[:5]
	rc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "ray.io/v1", "kind": "RayCluster", "spec": clusterSpec}}
	rc.SetName(name)
	rc.SetNamespace(rj.GetNamespace())
	rc.SetLabels(map[string]string{"ray.io/originated-from-crd": "RayJob", "ray.io/originated-from-cr-name": rj.GetName()})
	rc.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(rj, schema.GroupVersionKind{Group: "ray.io", Version: "v1", Kind: "RayJob"})})
	got, err := dyn.Resource(rayClusters).Namespace(rj.GetNamespace()).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		got, err = dyn.Resource(rayClusters).Namespace(rj.GetNamespace()).Create(ctx, rc, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	var pods []*corev1.Pod
	ensure := func(pod, nodeType, group string, tmplMap map[string]any) error {
		var tmpl corev1.PodTemplateSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmplMap, &tmpl); err != nil {
			return err
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: rj.GetNamespace(), Annotations: tmpl.Annotations,
			Labels: merged(tmpl.Labels, map[string]string{remediate.LabelRayCluster: name, remediate.LabelRayNodeType: nodeType,
				remediate.LabelRayGroup: group, "ray.io/is-ray-node": "yes"}),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(got, schema.GroupVersionKind{Group: "ray.io", Version: "v1", Kind: "RayCluster"})}},
			Spec: tmpl.Spec}
		have, err := kube.CoreV1().Pods(rj.GetNamespace()).Get(ctx, pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			have, err = kube.CoreV1().Pods(rj.GetNamespace()).Create(ctx, p, metav1.CreateOptions{})
		}
		if err == nil {
			pods = append(pods, have)
		}
		return err
	}
	head, _, _ := unstructured.NestedMap(clusterSpec, "headGroupSpec", "template")
	if err := ensure(name+"-head", "head", "headgroup", head); err != nil {
		return err
	}
	workers, _, _ := unstructured.NestedSlice(clusterSpec, "workerGroupSpecs")
	for _, w := range workers {
		wg, _ := w.(map[string]any)
		group, _ := wg["groupName"].(string)
		replicas, _ := wg["replicas"].(int64)
		tmpl, _ := wg["template"].(map[string]any)
		for i := range replicas {
			if err := ensure(fmt.Sprintf("%s-%s-worker-%d", name, group, i), "worker", group, tmpl); err != nil {
				return err
			}
		}
	}
	st := map[string]any{"rayClusterName": name, "jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "jobId": rj.GetName() + "-1"}
	if start, ok, _ := unstructured.NestedString(rj.Object, "status", "startTime"); ok {
		st["startTime"] = start
	} else {
		st["startTime"] = metav1.Now().UTC().Format(time.RFC3339)
	}
	ended := 0
	for _, p := range pods {
		switch p.Status.Phase {
		case corev1.PodFailed:
			st["jobDeploymentStatus"], st["jobStatus"], st["reason"] = "Failed", "FAILED", "AppFailed"
			st["message"] = "Job entrypoint command failed with exit code 1, last available logs: ... ray.exceptions.OutOfMemoryError"
		case corev1.PodSucceeded:
			ended++
		}
	}
	if st["jobDeploymentStatus"] == "Running" && ended == len(pods) {
		st["jobDeploymentStatus"], st["jobStatus"], st["message"] = "Complete", "SUCCEEDED", "Job finished successfully."
	}
	if st["jobDeploymentStatus"] != "Running" {
		st["endTime"] = metav1.Now().UTC().Format(time.RFC3339)
	}
	cur, _, _ := unstructured.NestedMap(rj.Object, "status")
	if fmt.Sprint(cur["jobDeploymentStatus"], cur["rayClusterName"]) == fmt.Sprint(st["jobDeploymentStatus"], st["rayClusterName"]) {
		return nil
	}
	rj = rj.DeepCopy()
	rj.Object["status"] = st
	_, err = dyn.Resource(rayJobs).Namespace(rj.GetNamespace()).UpdateStatus(ctx, rj, metav1.UpdateOptions{})
	return err
}

// trainingRayJob is a RayJob of a head and a worker group "workers" of replicas
// pods whose memory limit is memory and whose true need is need; every pod runs
// two seconds (the API's times are whole seconds).
func trainingRayJob(name, memory, need string, replicas int64) *unstructured.Unstructured {
	tmpl := func(image, mem string, truth map[string]string) map[string]any {
		q := resource.MustParse(mem)
		t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: merged(truth, map[string]string{simcluster.TruthRunSeconds: "2"})},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "ray", Image: image,
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q},
					Requests: corev1.ResourceList{corev1.ResourceMemory: q, corev1.ResourceCPU: resource.MustParse("2")}}}}}}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&t)
		if err != nil {
			panic(err)
		}
		delete(m["metadata"].(map[string]any), "creationTimestamp")
		return m
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "ray.io/v1", "kind": "RayJob",
		"spec": map[string]any{"entrypoint": "python train.py", "shutdownAfterJobFinishes": false,
			"rayClusterSpec": map[string]any{"rayVersion": "2.40.0",
				"headGroupSpec": map[string]any{"rayStartParams": map[string]any{}, "template": tmpl("rayproject/ray:2.40", "4Gi", nil)},
				"workerGroupSpecs": []any{map[string]any{"groupName": "workers", "replicas": replicas, "minReplicas": replicas, "maxReplicas": replicas,
					"rayStartParams": map[string]any{}, "template": tmpl("rayproject/ray:2.40", memory, map[string]string{truthMemory: need})}}}}}}
	u.SetName(name)
	u.SetNamespace("ml")
	u.SetLabels(map[string]string{failure.LabelKind: "training", "team": "nlp"})
	return u
}

// rayGroupMemory is the memory limit of group's container ("head" or a worker
// group) in a RayJob.
func rayGroupMemory(t *testing.T, u *unstructured.Unstructured, group string) resource.Quantity {
	t.Helper()
	var tmpl map[string]any
	if group == remediate.RayHeadGroup {
		tmpl, _, _ = unstructured.NestedMap(u.Object, "spec", "rayClusterSpec", "headGroupSpec", "template")
	} else {
		workers, _, _ := unstructured.NestedSlice(u.Object, "spec", "rayClusterSpec", "workerGroupSpecs")
		for _, w := range workers {
			if wg := w.(map[string]any); wg["groupName"] == group {
				tmpl = wg["template"].(map[string]any)
			}
		}
	}
	var pt corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pt); err != nil || len(pt.Spec.Containers) == 0 {
		t.Fatalf("%s's group %s: %v", u.GetName(), group, err)
	}
	return pt.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
}

// TestIntegrationRayJob runs serve with kubernetes.kinds [Job, RayJob] against
// the real API server with KubeRay's real RayJob and RayCluster CRDs and the test
// kubelet; the test plays KubeRay's operator (playKubeRay).
func TestIntegrationRayJob(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.InstallKubeRayCRDs(t)
	jobs := c.Dynamic.Resource(rayJobs).Namespace("ml")
	playKubeRay(t, c.Client, c.Dynamic, "ml")
	kubetest.RunKubelet(t, c.Client, truth, simcluster.Node{Name: "node-1"}, simcluster.Node{Name: "node-2"})

	// A RayJob of someone else's, with the name the fix of "squat" will want
	// (suspended: nothing runs it).
	theirs := trainingRayJob("squat-af2", "1Gi", "1Gi", 1)
	theirs.SetLabels(map[string]string{"owner": "them"})
	_ = unstructured.SetNestedField(theirs.Object, true, "spec", "suspend")
	theirs, err := jobs.Create(ctx, theirs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Kubernetes.Kubeconfig, cfg.Kubernetes.Namespaces, cfg.Kubernetes.LeaseNamespace = c.Kubeconfig, []string{"ml"}, "default"
	cfg.Kubernetes.Kinds = []string{config.KindJob, config.KindRayJob}
	cfg.BackoffSeconds = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	stop := runServe(t, &cfg, "serve")
	store, err := ledger.Open(ctx, cfg.LedgerDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	remediation := func(rj *unstructured.Unstructured, states ...ledger.State) ledger.Remediation {
		t.Helper()
		var r ledger.Remediation
		waitFor(t, fmt.Sprintf("remediation of rayjob %s in %v", rj.GetName(), states), 90*time.Second, func() bool {
			var err error
			r, err = store.Get(ctx, remediate.RayJobEventID(string(rj.GetUID())))
			return err == nil && slicesContains(states, r.State)
		})
		return r
	}

	train, err := jobs.Create(ctx, trainingRayJob("train", "16Gi", "20Gi", 2), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := remediation(train, ledger.Succeeded, ledger.Failed, ledger.Abandoned, ledger.Rejected, ledger.PendingReview)
	t.Run("an OOM-killed worker fails the RayJob: one event, fixed once with more memory on the workers alone, the outcome recorded", func(t *testing.T) {
		ev := r.Event
		if r.State != ledger.Succeeded || r.Category != "oom_memory" || len(r.Attempts) != 1 || r.Attempts[0].JobName != "train-af2" {
			t.Fatalf("remediation: %s %s (%s), attempts %+v; want oom_memory, train-af2 succeeded", r.State, r.Category, r.Reason, r.Attempts)
		}
		if ev.Failure.Reason != "OOMKilled" || ev.Failure.ExitCode != 137 || ev.Job.Kind != failure.Training ||
			ev.Job.Labels[remediate.LabelRayGroup] != "workers" || !strings.Contains(ev.Job.Labels[remediate.LabelFailedPod], "-workers-worker-") {
			t.Errorf("event: failure %+v, job kind %s labels %v; want a worker's OOMKilled 137 (not the RayJob's AppFailed), training", ev.Failure, ev.Job.Kind, ev.Job.Labels)
		}
		fix, err := jobs.Get(ctx, "train-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := rayGroupMemory(t, fix, "workers"); m.Cmp(resource.MustParse("16Gi")) <= 0 {
			t.Errorf("train-af2's workers ask for %s, want more than 16Gi", m.String())
		}
		if m := rayGroupMemory(t, fix, remediate.RayHeadGroup); m.Cmp(resource.MustParse("4Gi")) != 0 {
			t.Errorf("train-af2's head asks for %s, want its 4Gi: it did not fail", m.String())
		}
		entry, _, _ := unstructured.NestedString(fix.Object, "spec", "entrypoint")
		replicas, _, _ := unstructured.NestedSlice(fix.Object, "spec", "rayClusterSpec", "workerGroupSpecs")
		if fix.GetLabels()[failure.LabelManaged] != "true" || fix.GetLabels()[failure.LabelOriginal] != "train" || fix.GetLabels()["team"] != "nlp" ||
			fix.GetAnnotations()[failure.AnnotationRemediation] != r.EventID || entry != "python train.py" || replicas[0].(map[string]any)["replicas"] != int64(2) {
			t.Errorf("train-af2: labels %v annotations %v entrypoint %q workers %v", fix.GetLabels(), fix.GetAnnotations(), entry, replicas)
		}
		outcomes, err := store.AttemptOutcomes(ctx, []string{r.EventID})
		if o, ok := outcomes[r.EventID]; err != nil || !ok || !o.Succeeded || o.Cost <= 0 || o.DurationSeconds <= 0 || o.Resources.MemoryBytes <= 16<<30 {
			t.Errorf("outcome %+v (%v); want succeeded, priced, timed, with the workers' new memory", o, err)
		}
	})

	t.Run("a RayJob autofix did not create is never modified", func(t *testing.T) {
		squat, err := jobs.Create(ctx, trainingRayJob("squat", "16Gi", "20Gi", 1), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := remediation(squat, ledger.Abandoned, ledger.Failed, ledger.Rejected)
		got, err := jobs.Get(ctx, "squat-af2", metav1.GetOptions{})
		if err != nil || got.GetResourceVersion() != theirs.GetResourceVersion() || !maps.Equal(got.GetLabels(), theirs.GetLabels()) || r.State != ledger.Abandoned {
			t.Errorf("their squat-af2 after the fix of squat was %s (%s): %v, labels %v, resource version %s -> %s; want it untouched and the fix abandoned",
				r.State, r.Reason, err, got.GetLabels(), theirs.GetResourceVersion(), got.GetResourceVersion())
		}
	})

	t.Run("a RayJob on an existing cluster: its failure reported from its status, its fix refused, the cluster untouched", func(t *testing.T) {
		// A RayCluster someone runs, and a RayJob that submits to it.
		shared := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "ray.io/v1", "kind": "RayCluster",
			"spec": trainingRayJob("x", "8Gi", "1Gi", 1).Object["spec"].(map[string]any)["rayClusterSpec"]}}
		shared.SetName("shared")
		shared.SetNamespace("ml")
		shared, err := c.Dynamic.Resource(rayClusters).Namespace("ml").Create(ctx, shared, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		onIt := trainingRayJob("on-shared", "8Gi", "1Gi", 1)
		delete(onIt.Object["spec"].(map[string]any), "rayClusterSpec")
		_ = unstructured.SetNestedStringMap(onIt.Object, map[string]string{"ray.io/cluster": "shared"}, "spec", "clusterSelector")
		onIt, err = jobs.Create(ctx, onIt, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		onIt.Object["status"] = map[string]any{"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed",
			"rayClusterName": "shared", "startTime": metav1.Now().UTC().Format(time.RFC3339), "endTime": metav1.Now().UTC().Format(time.RFC3339),
			"message": "Job entrypoint command failed with exit code 1: ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory."}
		if _, err := jobs.UpdateStatus(ctx, onIt, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := remediation(onIt, ledger.PendingReview, ledger.Rejected, ledger.Abandoned, ledger.Failed, ledger.Succeeded, ledger.Submitted)
		if f := r.Event.Failure; f.Reason != "AppFailed" || !strings.Contains(f.Message, "OutOfMemoryError") || r.Event.Job.Labels[remediate.LabelRayGroup] != "" {
			t.Errorf("event: failure %+v, labels %v; want the RayJob's own reason and message, and no group (the cluster is not its own)", f, r.Event.Job.Labels)
		}
		abandoned := ""
		for _, e := range r.Audit {
			if e.To == ledger.Abandoned {
				abandoned = e.Detail
			}
		}
		if r.State != ledger.Abandoned || r.Category != "oom_memory" || !strings.Contains(abandoned, "existing RayCluster") {
			t.Errorf("remediation %s %s (%q); want oom_memory (from the message) and the fix abandoned: the cluster is not autofix's", r.State, r.Category, abandoned)
		}
		if _, err := jobs.Get(ctx, "on-shared-af2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("on-shared-af2: %v, want no attempt", err)
		}
		got, err := c.Dynamic.Resource(rayClusters).Namespace("ml").Get(ctx, "shared", metav1.GetOptions{})
		if err != nil || got.GetResourceVersion() != shared.GetResourceVersion() {
			t.Errorf("the shared RayCluster: %v, resource version %s -> %s; want it untouched", err, shared.GetResourceVersion(), got.GetResourceVersion())
		}
	})

	t.Run("a pipeline trains as a RayJob and compresses as a Job; the OOM-killed RayJob stage is fixed and the run goes on", func(t *testing.T) {
		def, err := pipeline.Parse([]byte(`
name: llm
namespace: ml
artifacts: s3://models/llm
stages:
  - name: train
    kind: training
    rayjob:
      entrypoint: python train.py
      rayClusterSpec:
        headGroupSpec:
          template:
            metadata: {annotations: {"` + simcluster.TruthRunSeconds + `": "2"}}
            spec: {restartPolicy: Never, containers: [{name: ray-head, image: "ray:2.40", resources: {limits: {memory: 4Gi}}}]}
        workerGroupSpecs:
          - groupName: workers
            replicas: 2
            template:
              metadata: {annotations: {"` + truthMemory + `": "10Gi", "` + simcluster.TruthRunSeconds + `": "2"}}
              spec: {restartPolicy: Never, containers: [{name: ray-worker, image: "ray:2.40", resources: {requests: {cpu: "2", memory: 8Gi}, limits: {memory: 8Gi}}}]}
  - name: compress
    kind: compression
    job:
      spec: {containers: [{name: quantize, image: "tensorrt:24.05", resources: {limits: {memory: 4Gi}}}]}
`))
		if err != nil {
			t.Fatal(err)
		}
		// restartPolicy Never: the test's KubeRay fails a RayJob when a pod of its
		// cluster fails, not when a container restarts.
		runCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		d, err := service.PipelineDriver(&cfg, c.Client, service.LedgerChains(store), nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Poll = 200 * time.Millisecond
		st, err := d.Run(runCtx, def, "r1")
		if err != nil || st.Phase != pipeline.Succeeded {
			t.Fatalf("run r1: %+v, %v", st, err)
		}
		if train := st.Stages[0]; train.Attempts != 2 || train.Object != "llm-r1-train-af2" {
			t.Errorf("train stage = %+v, want it to succeed on the fixed RayJob llm-r1-train-af2", train)
		}
		fix, err := jobs.Get(ctx, "llm-r1-train-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := rayGroupMemory(t, fix, "workers"); m.Cmp(resource.MustParse("8Gi")) <= 0 {
			t.Errorf("llm-r1-train-af2's workers ask for %s, want more than 8Gi", m.String())
		}
		if l := fix.GetLabels(); l[pipeline.LabelRun] != "r1" || l[failure.LabelStage] != "train" {
			t.Errorf("llm-r1-train-af2's labels %v: want the run's and the stage's", l)
		}
		compress, err := c.Client.BatchV1().Jobs("ml").Get(ctx, "llm-r1-compress", metav1.GetOptions{})
		if err != nil || envOf(compress, "ARTIFACT_IN") != "s3://models/llm/r1/train" {
			t.Errorf("compress stage Job: %v, reads %q; want the train stage's output", err, envOf(compress, "ARTIFACT_IN"))
		}
	})

	t.Run("nothing is submitted twice across a restart", func(t *testing.T) {
		stop()
		cfg.HTTP.Addr = freeAddr(t)
		runServe(t, &cfg, "serve again")
		// A RayJob that fails after the restart: once its remediation is recorded,
		// the restarted watcher has handled what it listed first (train among them).
		after := trainingRayJob("after", "4Gi", "1Gi", 1)
		workers, _, _ := unstructured.NestedSlice(after.Object, "spec", "rayClusterSpec", "workerGroupSpecs")
		ann := workers[0].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)
		ann[truthUserCode] = "true"
		_ = unstructured.SetNestedSlice(after.Object, workers, "spec", "rayClusterSpec", "workerGroupSpecs")
		after, err := jobs.Create(ctx, after, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the restarted serve to record the RayJob that failed after it started", 90*time.Second, func() bool {
			_, err := store.Get(ctx, remediate.RayJobEventID(string(after.GetUID())))
			return err == nil
		})
		list, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: failure.LabelOriginal + "=train"})
		if err != nil || len(list.Items) != 1 || list.Items[0].GetName() != "train-af2" {
			t.Errorf("attempts of train after the restart: %d %v, want train-af2 alone", len(list.Items), err)
		}
		again, err := store.Get(ctx, remediate.RayJobEventID(string(train.GetUID())))
		if err != nil || len(again.Attempts) != 1 || again.State != ledger.Succeeded {
			t.Errorf("train's remediation after the restart: %v %s, %d attempts", err, again.State, len(again.Attempts))
		}
	})
}
