package remediate

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

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

var wfStart = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)

func wfAt(minutes int) string {
	return wfStart.Add(time.Duration(minutes) * time.Minute).Format(time.RFC3339)
}

// failedWorkflow is Workflow pipe of two step groups: [prep, lint] then [train].
// lint failed first, which the Workflow tolerated (continueOn); prep succeeded;
// train, retried once, ran out of memory twice, its second retry last.
func failedWorkflow() *unstructured.Unstructured {
	id := func(name string) string { return argoNodeID("pipe", name) }
	node := func(name, display, typ, tmpl, phase, msg string, start, end int, children ...string) map[string]any {
		n := map[string]any{"id": id(name), "name": name, "displayName": display, "type": typ, "phase": phase,
			"startedAt": wfAt(start), "finishedAt": wfAt(end)}
		if tmpl != "" {
			n["templateName"] = tmpl
		}
		if msg != "" {
			n["message"] = msg
		}
		if len(children) > 0 {
			var c []any
			for _, ch := range children {
				c = append(c, id(ch))
			}
			n["children"] = c
		}
		if typ == argoNodePod {
			n["hostNodeName"] = "node-1"
			n["outputs"] = map[string]any{"exitCode": "0"}
		}
		return n
	}
	nodes := map[string]any{}
	for _, n := range []map[string]any{
		node("pipe", "pipe", "Steps", "main", "Failed", "child 'pipe[1]' failed", 0, 30, "pipe[0]"),
		node("pipe[0]", "[0]", "StepGroup", "main", "Succeeded", "", 0, 10, "pipe[0].prep", "pipe[0].lint"),
		node("pipe[0].prep", "prep", argoNodePod, "prep", "Succeeded", "", 0, 10, "pipe[1]"),
		node("pipe[0].lint", "lint", argoNodePod, "lint", "Failed", "Error (exit code 1)", 0, 2, "pipe[1]"),
		node("pipe[1]", "[1]", "StepGroup", "main", "Failed", "child failed", 10, 30, "pipe[1].train"),
		node("pipe[1].train", "train", argoNodeRetry, "train", "Failed", "No more retries left", 10, 30, "pipe[1].train(0)", "pipe[1].train(1)"),
		node("pipe[1].train(0)", "train(0)", argoNodePod, "train", "Failed", "OOMKilled (exit code 137)", 10, 15),
		node("pipe[1].train(1)", "train(1)", argoNodePod, "train", "Failed", "OOMKilled (exit code 137)", 16, 29),
		node("pipe.onExit", "pipe.onExit", argoNodePod, "notify", "Succeeded", "", 30, 31),
	} {
		nodes[n["id"].(string)] = n
	}
	container := func(image, memory string) map[string]any {
		return map[string]any{"image": image, "command": []any{"run"}, "args": []any{"--batch=64"},
			"resources": map[string]any{"limits": map[string]any{"memory": memory}, "requests": map[string]any{"memory": memory, "cpu": "1"}}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": "pipe", "namespace": "ml", "uid": "wf-uid-1", "creationTimestamp": wfAt(0),
			"labels": map[string]any{"team": "nlp", "workflows.argoproj.io/phase": "Failed", "workflows.argoproj.io/completed": "true"},
			"annotations": map[string]any{failure.AnnotationParams: `{"batch":{"arg":"--batch"}}`,
				failure.AnnotationTunables: `{"batch":{"role":"micro_batch","min":1,"max":512}}`, "note": "kept"}},
		"spec": map[string]any{"entrypoint": "main", "onExit": "notify", "activeDeadlineSeconds": int64(0), "shutdown": "Stop",
			"templates": []any{
				map[string]any{"name": "main", "steps": []any{
					[]any{map[string]any{"name": "prep", "template": "prep"}, map[string]any{"name": "lint", "template": "lint", "continueOn": map[string]any{"failed": true}}},
					[]any{map[string]any{"name": "train", "template": "train"}}}},
				map[string]any{"name": "prep", "container": container("prep:1", "1Gi")},
				map[string]any{"name": "lint", "script": map[string]any{"image": "lint:1", "source": "exit 1", "command": []any{"sh"}}},
				map[string]any{"name": "train", "retryStrategy": map[string]any{"limit": "1"}, "container": container("trainer:1", "2Gi")},
				map[string]any{"name": "notify", "container": container("curl:1", "64Mi")},
			}},
		"status": map[string]any{"phase": "Failed", "message": "child 'pipe[1]' failed", "startedAt": wfAt(0), "finishedAt": wfAt(30),
			"nodes": nodes},
	}}
}

// workflowPod is the pod Argo ran for node name of pipe, ended with the main
// container's exit and reason.
func workflowPod(name, tmpl string, exit int32, reason string, end int) *corev1.Pod {
	start := metav1.NewTime(wfStart.Add(time.Duration(end-1) * time.Minute))
	mem := resource.MustParse("2Gi")
	phase := corev1.PodFailed
	if exit == 0 {
		phase = corev1.PodSucceeded
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pipe-" + tmpl + "-" + strings.TrimPrefix(argoNodeID("pipe", name), "pipe-"), Namespace: "ml",
			Labels:          map[string]string{argoLabelWorkflow: "pipe"},
			Annotations:     map[string]string{argoAnnotationNodeID: argoNodeID("pipe", name)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: "pipe", UID: "wf-uid-1", Controller: new(true)}}},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "wait", Image: "argoexec"},
			{Name: "main", Image: "trainer:1", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: mem},
				Requests: corev1.ResourceList{corev1.ResourceMemory: mem}}}}},
		Status: corev1.PodStatus{Phase: phase, StartTime: &start, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "wait", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed",
				StartedAt: start, FinishedAt: metav1.NewTime(wfStart.Add(time.Duration(end) * time.Minute))}}},
			{Name: "main", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason,
				StartedAt: start, FinishedAt: metav1.NewTime(wfStart.Add(time.Duration(end) * time.Minute))}}}}},
	}
}

func workflowClient(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{WorkflowGVR: "WorkflowList"}, objs...)
}

func decoded(t *testing.T, u *unstructured.Unstructured) *argoWorkflow {
	t.Helper()
	wf, err := decodeWorkflow(u)
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

func TestWorkflowRootCause(t *testing.T) {
	dag := func(bPhase string) *unstructured.Unstructured {
		u := failedWorkflow()
		nodes := map[string]any{}
		for _, n := range []struct {
			name, typ, phase string
			end              int
			children         []string
		}{
			{"pipe", "DAG", "Failed", 20, []string{"pipe.a", "pipe.b"}},
			{"pipe.a", argoNodePod, "Failed", 12, nil},
			{"pipe.b", argoNodePod, bPhase, 9, nil},
		} {
			var children []any
			for _, c := range n.children {
				children = append(children, argoNodeID("pipe", c))
			}
			nodes[argoNodeID("pipe", n.name)] = map[string]any{"id": argoNodeID("pipe", n.name), "name": n.name, "type": n.typ,
				"phase": n.phase, "templateName": strings.TrimPrefix(n.name, "pipe."), "finishedAt": wfAt(n.end), "children": children}
		}
		_ = unstructured.SetNestedField(u.Object, nodes, "status", "nodes")
		return u
	}
	for _, tc := range []struct {
		name string
		wf   *unstructured.Unstructured
		want string
	}{
		{"the last retry of the step that failed, not a tolerated failure nor an earlier retry", failedWorkflow(), "pipe[1].train(1)"},
		{"of two failed DAG tasks, the one that ended first", dag("Failed"), "pipe.b"},
		{"a stopped task ends later than the one that failed", dag("Running"), "pipe.a"},
		{"an Error phase counts as failed", dag("Error"), "pipe.b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := workflowRootCause(decoded(t, tc.wf))
			if rc == nil || rc.Name != tc.want {
				t.Errorf("root cause = %+v, want %s", rc, tc.want)
			}
		})
	}
	noPod := failedWorkflow()
	_ = unstructured.SetNestedField(noPod.Object, map[string]any{"pipe": map[string]any{"id": "pipe", "name": "pipe", "type": "Steps", "phase": "Error"}},
		"status", "nodes")
	if rc := workflowRootCause(decoded(t, noPod)); rc != nil {
		t.Errorf("root cause of a workflow no pod step of which failed = %+v, want none", rc)
	}
}

// workflowTestController is a Workflow controller whose informers never run: sync
// is called directly.
func workflowTestController(pub Publisher, sink OutcomeSink, o WatcherOptions, pods ...runtime.Object) *workflowController {
	return &workflowController{Watcher: newWatcher(fake.NewClientset(pods...), pub, sink, o)}
}

func TestSyncWorkflowPublishesOneEventFromTheFailedStep(t *testing.T) {
	wf := failedWorkflow()
	pub := &events{}
	cat := failure.DefaultCatalogue()
	c := workflowTestController(pub, nil, WatcherOptions{Catalogue: &cat},
		workflowPod("pipe[0].prep", "prep", 0, "Completed", 10), workflowPod("pipe[1].train(1)", "train", 137, "OOMKilled", 29))
	for range 2 {
		if err := c.sync(context.Background(), wf); err != nil {
			t.Fatal(err)
		}
	}
	if got := pub.ids(); !slices.Equal(got, []string{"k8s-workflow-wf-uid-1"}) {
		t.Fatalf("published %v, want the Workflow's one event", got)
	}
	j, f := pub.evs[0].Job, pub.evs[0].Failure
	if j.Name != "pipe" || j.UID != "wf-uid-1" || j.Kind != failure.Batch || j.Image != "trainer:1" || j.Resources.MemoryBytes != 2<<30 {
		t.Errorf("event job = %+v; want Workflow pipe, batch, the train template's image and 2Gi", j)
	}
	if j.Labels[LabelArgoTemplate] != "train" || j.Labels[LabelArgoNode] != argoNodeID("pipe", "pipe[1].train(1)") || j.Labels[LabelArgoStep] != "train(1)" ||
		!strings.HasPrefix(j.Labels[LabelFailedPod], "pipe-train-") || j.Labels["team"] != "nlp" {
		t.Errorf("event labels = %v; want template train, its last retry's node and pod, and the Workflow's own", j.Labels)
	}
	if j.Params["batch"] != "64" || j.Tunables["batch"].Role != failure.TunableRole("micro_batch") {
		t.Errorf("params %v tunables %v; want the Workflow's declared batch at 64", j.Params, j.Tunables)
	}
	if f.Reason != "OOMKilled" || f.ExitCode != 137 || f.Node != "node-1" || f.DurationSeconds != 60 {
		t.Errorf("failure = %+v; want the main container's OOMKilled 137 on node-1, its container's minute", f)
	}
	if f.Cost <= 0 || !strings.Contains(f.Unpriced, "3 of the Workflow's pod steps had no pod left to price") {
		t.Errorf("cost %g, unpriced %q; want the two pods priced and the three without a pod noted", f.Cost, f.Unpriced)
	}
}

func TestSyncWorkflowWithoutItsPodReadsTheNodesMessage(t *testing.T) {
	pub := &events{}
	if err := workflowTestController(pub, nil, WatcherOptions{}).sync(context.Background(), failedWorkflow()); err != nil {
		t.Fatal(err)
	}
	if len(pub.evs) != 1 || pub.evs[0].Failure.Reason != "OOMKilled" || pub.evs[0].Failure.ExitCode != 137 {
		t.Errorf("events %+v; want one, OOMKilled 137 from Argo's message", pub.evs)
	}
}

func TestSyncWorkflowLeavesWorkflowsThatHaveNotFailed(t *testing.T) {
	for _, phase := range []string{"Running", "Succeeded", ""} {
		wf := failedWorkflow()
		_ = unstructured.SetNestedField(wf.Object, phase, "status", "phase")
		pub := &events{}
		if err := workflowTestController(pub, nil, WatcherOptions{}).sync(context.Background(), wf); err != nil {
			t.Fatal(err)
		}
		if len(pub.ids()) != 0 {
			t.Errorf("phase %q: published %v", phase, pub.ids())
		}
	}
}

func TestSyncWorkflowReportsAnAttemptsOutcomeOnce(t *testing.T) {
	wf := failedWorkflow()
	wf.SetName("pipe-af2")
	wf.SetLabels(map[string]string{failure.LabelManaged: "true", failure.LabelAttempt: "2", failure.LabelOriginal: "pipe"})
	wf.SetAnnotations(map[string]string{failure.AnnotationRemediation: "k8s-workflow-wf-uid-0", AnnotationArgoTemplate: "train"})
	_ = unstructured.SetNestedField(wf.Object, "Succeeded", "status", "phase")
	// Created after prep, lint and train's first retry ran (in the failed Workflow,
	// whose steps an attempt keeps).
	_ = unstructured.SetNestedField(wf.Object, wfAt(12), "metadata", "creationTimestamp")
	sink := &outcomeRecorder{}
	cat := failure.DefaultCatalogue()
	c := workflowTestController(&events{}, sink, WatcherOptions{Catalogue: &cat})
	for range 2 {
		if err := c.sync(context.Background(), wf); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(sink.jobs, []string{"ml/pipe-af2 succeeded"}) {
		t.Fatalf("outcomes %v, want pipe-af2 succeeded once", sink.jobs)
	}
	if o := sink.outcomes[0]; o.DurationSeconds != 30*60 || o.Resources.MemoryBytes != 2<<30 || o.Attempt != 2 || o.Template != "pipe" {
		t.Errorf("outcome %+v; want 30 minutes, the train template's 2Gi, attempt 2 of pipe", o)
	}
	if o := sink.outcomes[0]; !strings.HasPrefix(o.Unpriced, "2 of the Workflow's pod steps") {
		t.Errorf("unpriced %q; want the two steps it ran without a pod counted, not the three it kept", o.Unpriced)
	}
}

// outcomeRecorder records the outcomes reported to it.
type outcomeRecorder struct {
	jobs     []string
	outcomes []failure.Outcome
}

func (s *outcomeRecorder) Finished(_ context.Context, job AttemptJob, succeeded bool, o failure.Outcome) error {
	how := "failed"
	if succeeded {
		how = "succeeded"
	}
	s.jobs, s.outcomes = append(s.jobs, job.Namespace+"/"+job.Name+" "+how), append(s.outcomes, o)
	return nil
}

// TestWorkflowWatchReportsAFailedWorkflowOnce: the adapter's informer finds the
// failed Workflow and reports it once, and leaves a running one alone.
func TestWorkflowWatchReportsAFailedWorkflowOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		running := failedWorkflow()
		running.SetName("other")
		running.SetUID("wf-uid-2")
		_ = unstructured.SetNestedField(running.Object, "Running", "status", "phase")
		a, err := NewWorkflows(fake.NewClientset(), workflowClient(failedWorkflow(), running),
			AdapterOptions{Watch: WatcherOptions{Namespaces: []string{"ml"}, LogLines: -1}})
		if err != nil {
			t.Fatal(err)
		}
		pub := &events{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Watch(ctx, pub, nil) }()
		time.Sleep(time.Hour) // room for a duplicate to show up
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got, want := pub.ids(), []string{"k8s-workflow-wf-uid-1"}; !slices.Equal(got, want) {
			t.Errorf("published %q, want %q", got, want)
		}
	})
}
