//go:build integration

package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/kubetest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/service"
	"github.com/autofix/autofix/simcluster"
)

// pipelineWorkflow is an Argo Workflow of two steps, prep then train, each a
// container template: prep succeeds; train's memory limit is memory and its true
// need is need, and it is retried once (retryStrategy). Each pod runs two seconds
// (the API's times are whole seconds).
func pipelineWorkflow(name, memory, need string, extra map[string]string) *unstructured.Unstructured {
	template := func(tname, image, mem string, truth map[string]string) map[string]any {
		annotations := map[string]any{simcluster.TruthRunSeconds: "2"}
		for k, v := range truth {
			annotations[k] = v
		}
		return map[string]any{"name": tname, "metadata": map[string]any{"annotations": annotations},
			"container": map[string]any{"image": image, "command": []any{"python", tname + ".py"},
				"resources": map[string]any{"limits": map[string]any{"memory": mem}, "requests": map[string]any{"memory": mem, "cpu": "1"}}}}
	}
	truth := map[string]string{truthMemory: need}
	maps.Copy(truth, extra)
	train := template("train", "trainer:1", memory, truth)
	train["retryStrategy"] = map[string]any{"limit": "1"}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": name, "namespace": "ml", "labels": map[string]any{failure.LabelKind: "training", "team": "nlp"}},
		"spec": map[string]any{"entrypoint": "main", "templates": []any{
			map[string]any{"name": "main", "steps": []any{
				[]any{map[string]any{"name": "prep", "template": "prep"}},
				[]any{map[string]any{"name": "train", "template": "train"}}}},
			template("prep", "prep:1", "1Gi", nil),
			train,
		}},
	}}
}

// dagWorkflow is pipelineWorkflow as a DAG: train depends on "prep.Succeeded" (the
// explicit form, which a kept prep must still satisfy).
func dagWorkflow(name, memory, need string) *unstructured.Unstructured {
	wf := pipelineWorkflow(name, memory, need, nil)
	templates, _, _ := unstructured.NestedSlice(wf.Object, "spec", "templates")
	templates[0] = map[string]any{"name": "main", "dag": map[string]any{"tasks": []any{
		map[string]any{"name": "prep", "template": "prep"},
		map[string]any{"name": "train", "template": "train", "depends": "prep.Succeeded"}}}}
	_ = unstructured.SetNestedSlice(wf.Object, templates, "spec", "templates")
	return wf
}

// templateMemory is the memory limit of the Workflow's template tname.
func templateMemory(t *testing.T, wf *unstructured.Unstructured, tname string) resource.Quantity {
	t.Helper()
	templates, _, _ := unstructured.NestedSlice(wf.Object, "spec", "templates")
	for _, x := range templates {
		m, _ := x.(map[string]any)
		if m["name"] == tname {
			s, _, _ := unstructured.NestedString(m, "container", "resources", "limits", "memory")
			return resource.MustParse(s)
		}
	}
	t.Fatalf("workflow %s has no template %s", wf.GetName(), tname)
	return resource.Quantity{}
}

// workflowNodes are the Workflow's nodes by display name: "type phase".
func workflowNodes(wf *unstructured.Unstructured) map[string]string {
	nodes, _, _ := unstructured.NestedMap(wf.Object, "status", "nodes")
	out := map[string]string{}
	for _, n := range nodes {
		m, _ := n.(map[string]any)
		out[fmt.Sprint(m["displayName"])] = fmt.Sprint(m["type"], " ", m["phase"])
	}
	return out
}

// fieldManagers are who wrote the object, as the API server records them.
func fieldManagers(u *unstructured.Unstructured) []string {
	var out []string
	for _, m := range u.GetManagedFields() {
		out = append(out, m.Manager)
	}
	return out
}

// TestIntegrationArgo runs serve with kubernetes.kinds [Job, Workflow] against the
// real API server with Argo's CRDs and the real Argo Workflows controller (built
// from its Go module); the test plays the node (RunArgoKubelet): there is no real
// kubelet to run Argo's executor.
func TestIntegrationArgo(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.StartArgo(t)
	kubetest.RunArgoKubelet(t, c.Client, truth, simcluster.Node{Name: "node-1"})
	workflows := c.Dynamic.Resource(kubetest.WorkflowGVR).Namespace("ml")

	// A Workflow of someone else's, with the name the fix of "squat" will want.
	squatter := pipelineWorkflow("squat-af2", "1Gi", "512Mi", nil)
	squatter.SetLabels(map[string]string{"owner": "them"})
	theirs, err := workflows.Create(ctx, squatter, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Kubernetes.Kubeconfig, cfg.Kubernetes.Namespaces, cfg.Kubernetes.LeaseNamespace = c.Kubeconfig, []string{"ml"}, "default"
	cfg.Kubernetes.Kinds = []string{config.KindJob, config.KindWorkflow}
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
	remediation := func(wf *unstructured.Unstructured, states ...ledger.State) ledger.Remediation {
		t.Helper()
		var r ledger.Remediation
		waitFor(t, fmt.Sprintf("remediation of workflow %s in %v", wf.GetName(), states), 120*time.Second, func() bool {
			var err error
			r, err = store.Get(ctx, remediate.WorkflowEventID(string(wf.GetUID())))
			return err == nil && slicesContains(states, r.State)
		})
		return r
	}

	pipe, err := workflows.Create(ctx, pipelineWorkflow("pipe", "2Gi", "2560Mi", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := remediation(pipe, ledger.Succeeded, ledger.Failed, ledger.Abandoned, ledger.Rejected, ledger.PendingReview)
	t.Run("an OOMKilled step fails the Workflow: one event, fixed once with more memory on its template, prep not run again, the outcome recorded", func(t *testing.T) {
		ev := r.Event
		if r.State != ledger.Succeeded || r.Category != "oom_memory" || len(r.Attempts) != 1 || r.Attempts[0].JobName != "pipe-af2" {
			t.Fatalf("remediation: %s %s (%s), attempts %+v; want oom_memory, pipe-af2 succeeded", r.State, r.Category, r.Reason, r.Attempts)
		}
		if ev.Failure.Reason != "OOMKilled" || ev.Failure.ExitCode != 137 || ev.Job.Kind != failure.Training ||
			ev.Job.Labels[remediate.LabelArgoTemplate] != "train" || ev.Job.Labels[remediate.LabelArgoStep] != "train(1)" ||
			!strings.HasPrefix(ev.Job.Labels[remediate.LabelFailedPod], "pipe-train-") {
			t.Errorf("event: failure %+v, job kind %s labels %v; want train's last retry's OOMKilled 137, training", ev.Failure, ev.Job.Kind, ev.Job.Labels)
		}
		fix, err := workflows.Get(ctx, "pipe-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := templateMemory(t, fix, "train"); m.Cmp(resource.MustParse("2Gi")) <= 0 {
			t.Errorf("pipe-af2's train asks for %s, want more than 2Gi", m.String())
		}
		if m := templateMemory(t, fix, "prep"); m.Cmp(resource.MustParse("1Gi")) != 0 {
			t.Errorf("pipe-af2's prep asks for %s, want its 1Gi: it did not fail", m.String())
		}
		l, a := fix.GetLabels(), fix.GetAnnotations()
		if l[failure.LabelManaged] != "true" || l[failure.LabelOriginal] != "pipe" || l["team"] != "nlp" ||
			l["workflows.argoproj.io/resubmitted-from-workflow"] != "pipe" || a[failure.AnnotationRemediation] != r.EventID {
			t.Errorf("pipe-af2: labels %v annotations %v", l, a)
		}
		if w := fieldManagers(fix); !slices.Contains(w, "autofix") {
			t.Errorf("pipe-af2 was written by %v, want autofix among them (its client's field manager)", w)
		}
		phase, _, _ := unstructured.NestedString(fix.Object, "status", "phase")
		nodes := workflowNodes(fix)
		_, retried := nodes["train(1)"]
		if phase != "Succeeded" || nodes["prep"] != "Pod Succeeded" || nodes["train"] != "Retry Succeeded" || nodes["train(0)"] != "Pod Succeeded" || retried {
			t.Errorf("pipe-af2: phase %s, nodes %v; want Succeeded, prep kept from pipe, train run afresh and succeeded at its first try", phase, nodes)
		}
		pods, err := c.Client.CoreV1().Pods("ml").List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=pipe-af2"})
		if err != nil {
			t.Fatal(err)
		}
		var ran []string
		for _, p := range pods.Items {
			ran = append(ran, p.Annotations["workflows.argoproj.io/node-name"])
		}
		if len(ran) != 1 || !strings.HasSuffix(ran[0], ".train(0)") {
			t.Errorf("pipe-af2 ran pods for %v; want train's alone: prep succeeded in pipe", ran)
		}
		outcomes, err := store.AttemptOutcomes(ctx, []string{r.EventID})
		if o, ok := outcomes[r.EventID]; err != nil || !ok || !o.Succeeded || o.Cost <= 0 || o.DurationSeconds <= 0 || o.Resources.MemoryBytes <= 2<<30 {
			t.Errorf("outcome %+v (%v); want succeeded, priced, timed, with train's new memory", o, err)
		}
	})

	t.Run("a DAG's failed task is fixed the same way, its dependency on the kept task's success holding", func(t *testing.T) {
		dag, err := workflows.Create(ctx, dagWorkflow("dag", "2Gi", "2560Mi"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := remediation(dag, ledger.Succeeded, ledger.Failed, ledger.Abandoned, ledger.Rejected, ledger.PendingReview)
		if r.State != ledger.Succeeded || len(r.Attempts) != 1 || r.Event.Job.Labels[remediate.LabelArgoStep] != "train(1)" {
			t.Fatalf("remediation: %s %s (%s), attempts %+v, labels %v; want dag-af2 succeeded, from train's last retry",
				r.State, r.Category, r.Reason, r.Attempts, r.Event.Job.Labels)
		}
		fix, err := workflows.Get(ctx, "dag-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		phase, _, _ := unstructured.NestedString(fix.Object, "status", "phase")
		pods, err := c.Client.CoreV1().Pods("ml").List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=dag-af2"})
		if err != nil {
			t.Fatal(err)
		}
		if nodes := workflowNodes(fix); phase != "Succeeded" || nodes["prep"] != "Pod Succeeded" || nodes["train(0)"] != "Pod Succeeded" || len(pods.Items) != 1 {
			t.Errorf("dag-af2: phase %s, nodes %v, %d pods; want Succeeded, prep kept, train run once", phase, nodes, len(pods.Items))
		}
	})

	t.Run("a Workflow autofix did not create is never modified", func(t *testing.T) {
		squat, err := workflows.Create(ctx, pipelineWorkflow("squat", "1Gi", "2Gi", nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := remediation(squat, ledger.Abandoned, ledger.Failed, ledger.Rejected)
		got, err := workflows.Get(ctx, "squat-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// No write of autofix's (its client's field manager is "autofix") on it, no
		// label or annotation of autofix's, its template as it was: Argo's controller
		// writes its status, its own labels, and its spec back as it reads it (the
		// Workflow CRD has no status subresource), its own business.
		writers := fieldManagers(got)
		train := templateMemory(t, got, "train")
		if got.GetUID() != theirs.GetUID() || slices.Contains(writers, "autofix") ||
			got.GetLabels()["owner"] != "them" || got.GetLabels()[failure.LabelManaged] != "" || got.GetAnnotations()[failure.AnnotationRemediation] != "" ||
			train.Cmp(resource.MustParse("1Gi")) != 0 || r.State != ledger.Abandoned {
			t.Errorf("their squat-af2 after the fix of squat was %s (%s): written by %v, labels %v, annotations %v, train asks for %s; "+
				"want it untouched and the fix abandoned", r.State, r.Reason, writers, got.GetLabels(), got.GetAnnotations(), train.String())
		}
	})

	t.Run("a pipeline trains and compresses as Workflows; the OOM-killed train step is fixed and the run goes on", func(t *testing.T) {
		// Argo's executor needs each container's command (it cannot read the
		// image's here): a Workflow without one errs, which autofix leaves alone.
		step := func(name, memory, need string) string {
			return `{name: ` + name + `, metadata: {annotations: {"` + truthMemory + `": "` + need + `", "` + simcluster.TruthRunSeconds + `": "2"}},
            container: {image: "` + name + `:1", command: [python, ` + name + `.py], resources: {requests: {cpu: "1", memory: ` + memory + `}, limits: {memory: ` + memory + `}}}}`
		}
		def, err := pipeline.Parse([]byte(`
name: llm
namespace: ml
artifacts: s3://models/llm
stages:
  - name: train
    kind: training
    workflow:
      entrypoint: main
      templates:
        - {name: main, steps: [[{name: prep, template: prep}], [{name: train, template: train}]]}
        - ` + step("prep", "1Gi", "512Mi") + `
        - ` + step("train", "2Gi", "2560Mi") + `
  - name: compress
    kind: compression
    workflow:
      entrypoint: quantize
      templates:
        - ` + step("quantize", "1Gi", "512Mi") + `
`))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		defer cancel()
		d, err := service.PipelineDriver(&cfg, c.Client, service.LedgerChains(store), nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Poll = 200 * time.Millisecond
		st, err := d.Run(runCtx, def, "r1")
		if err != nil || st.Phase != pipeline.Succeeded {
			wf, _ := workflows.Get(ctx, "llm-r1-train", metav1.GetOptions{})
			status, _, _ := unstructured.NestedMap(wf.Object, "status")
			t.Fatalf("run r1: %+v, %v; llm-r1-train's status: %v", st, err, status)
		}
		if train := st.Stages[0]; train.Attempts != 2 || train.Object != "llm-r1-train-af2" {
			t.Errorf("train stage = %+v, want it to succeed on the fixed Workflow llm-r1-train-af2", train)
		}
		fix, err := workflows.Get(ctx, "llm-r1-train-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := templateMemory(t, fix, "train"); m.Cmp(resource.MustParse("2Gi")) <= 0 {
			t.Errorf("llm-r1-train-af2's train step asks for %s, want more than 2Gi", m.String())
		}
		if l := fix.GetLabels(); l[pipeline.LabelRun] != "r1" || l[failure.LabelStage] != "train" {
			t.Errorf("llm-r1-train-af2's labels %v: want the run's and the stage's", l)
		}
		compress, err := workflows.Get(ctx, "llm-r1-compress", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		templates, _, _ := unstructured.NestedSlice(compress.Object, "spec", "templates")
		env, _, _ := unstructured.NestedSlice(templates[0].(map[string]any), "container", "env")
		if len(env) != 2 || env[0].(map[string]any)["value"] != "s3://models/llm/r1/train" {
			t.Errorf("compress's env %v: want ARTIFACT_IN, the train stage's output", env)
		}
	})

	t.Run("nothing is submitted twice across a restart", func(t *testing.T) {
		stop()
		cfg.HTTP.Addr = freeAddr(t)
		runServe(t, &cfg, "serve again")
		// A Workflow that fails after the restart: once its remediation is recorded,
		// the restarted watcher has handled what it listed first (pipe among them).
		after, err := workflows.Create(ctx, pipelineWorkflow("after", "1Gi", "512Mi", map[string]string{truthUserCode: "true"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the restarted serve to record the Workflow that failed after it started", 120*time.Second, func() bool {
			_, err := store.Get(ctx, remediate.WorkflowEventID(string(after.GetUID())))
			return err == nil
		})
		list, err := workflows.List(ctx, metav1.ListOptions{LabelSelector: failure.LabelOriginal + "=pipe"})
		if err != nil || len(list.Items) != 1 || list.Items[0].GetName() != "pipe-af2" {
			t.Errorf("attempts of pipe after the restart: %d %v, want pipe-af2 alone", len(list.Items), err)
		}
		again, err := store.Get(ctx, remediate.WorkflowEventID(string(pipe.GetUID())))
		if err != nil || len(again.Attempts) != 1 || again.State != ledger.Succeeded {
			t.Errorf("pipe's remediation after the restart: %v %s, %d attempts", err, again.State, len(again.Attempts))
		}
	})
}
