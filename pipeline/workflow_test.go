package pipeline

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/policy"
)

// trainAsWorkflow trains as an Argo Workflow of two steps (prep, then train),
// then compresses as a Job.
const trainAsWorkflow = `
name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: train
    kind: training
    workflow:
      entrypoint: main
      templates:
        - name: main
          steps: [[{name: prep, template: prep}], [{name: train, template: train}]]
        - name: prep
          script: {image: python, command: [python], source: "print(1)"}
        - name: train
          container: {image: trainer, env: [{name: EPOCHS, value: "3"}]}
  - name: compress
    kind: compression
    job: {spec: {containers: [{name: q, image: trt}]}}
`

func workflows() *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{WorkflowGVR: "WorkflowList"})
}

// workflowEnds plays Argo's controller: the Workflow name ends in phase (a failed
// one with a failed pod step).
func workflowEnds(t *testing.T, dyn *dynamicfake.FakeDynamicClient, name, phase string) {
	t.Helper()
	rc := dyn.Resource(WorkflowGVR).Namespace("ml")
	u, err := rc.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, phase, "status", "phase"); err != nil {
		t.Fatal(err)
	}
	if phase == "Failed" || phase == "Error" { // one of its steps' pods failed
		_ = unstructured.SetNestedField(u.Object, map[string]any{"type": "Pod", "phase": "Failed"}, "status", "nodes", name+"-1")
	}
	if _, err := rc.Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestAWorkflowStage(t *testing.T) {
	def, err := Parse([]byte(trainAsWorkflow))
	if err != nil {
		t.Fatal(err)
	}
	kube, dyn := fake.NewClientset(), workflows()
	states := chains{}
	d := &Driver{Client: kube, Workflows: dyn.Resource(WorkflowGVR), Chains: states, Pods: policy.Pods{}}
	rc := dyn.Resource(WorkflowGVR).Namespace("ml")

	if st := stepOnce(t, d, def); st.Phase != Running || st.Stages[0].Object != "vision-r1-train" {
		t.Fatalf("first step: %s %+v, want running on vision-r1-train", st.Phase, st.Stages[0])
	}
	wf, err := rc.Get(context.Background(), "vision-r1-train", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the stage's Workflow: %v", err)
	}
	if l := wf.GetLabels(); l[failure.LabelStage] != "train" || l[LabelRun] != "r1" || l[failure.LabelKind] != "training" {
		t.Errorf("labels %v: want the stage's", l)
	}
	templates, _, _ := unstructured.NestedSlice(wf.Object, "spec", "templates")
	for i, want := range []string{"", "ARTIFACT_IN ARTIFACT_OUT", "EPOCHS ARTIFACT_IN ARTIFACT_OUT"} {
		tmpl := templates[i].(map[string]any)
		var names []string
		for _, key := range []string{"container", "script"} {
			if c, ok := tmpl[key].(map[string]any); ok {
				env, _ := c["env"].([]any)
				for _, e := range env {
					names = append(names, e.(map[string]any)["name"].(string))
				}
			}
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("templates[%d] env %q, want %q", i, got, want)
		}
	}
	// The next step finds it and creates nothing.
	dyn.ClearActions()
	if st := stepOnce(t, d, def); st.Stages[0].Object != "vision-r1-train" || st.Stages[0].Attempts != 1 {
		t.Fatalf("second step: %+v", st.Stages[0])
	}
	for _, a := range dyn.Actions() {
		if a.GetVerb() != "list" {
			t.Errorf("second step: %s of %s, want lists only", a.GetVerb(), a.GetResource().Resource)
		}
	}

	workflowEnds(t, dyn, "vision-r1-train", "Error")
	states["vision-r1-train"] = [2]string{"rejected", "not retryable: permission_denied"}
	if st := stepOnce(t, d, def); st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "not retried") {
		t.Fatalf("after the failure: %s %+v; want failed, not retried", st.Phase, st.Stages[0])
	}
	states["vision-r1-train"] = [2]string{"submitted", ""}
	attempt := wf.DeepCopy()
	attempt.SetName("vision-r1-train-af2")
	attempt.SetResourceVersion("")
	l := attempt.GetLabels()
	l[failure.LabelAttempt] = "2"
	attempt.SetLabels(l)
	if _, err := rc.Create(context.Background(), attempt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	workflowEnds(t, dyn, "vision-r1-train-af2", "Succeeded")
	st := stepOnce(t, d, def)
	if st.Stages[0].Phase != Succeeded || st.Stages[0].Object != "vision-r1-train-af2" || st.Stages[1].Phase != Running {
		t.Fatalf("after the attempt succeeded: %+v", st.Stages)
	}
}

// TestAWorkflowThatFailsWithoutAFailedStep: a Workflow Argo refused (no pod step
// failed) gets no event from autofix; its stage fails at once, saying why, rather
// than waiting for a remediation that never comes.
func TestAWorkflowThatFailsWithoutAFailedStep(t *testing.T) {
	def, err := Parse([]byte(trainAsWorkflow))
	if err != nil {
		t.Fatal(err)
	}
	dyn := workflows()
	d := &Driver{Client: fake.NewClientset(), Workflows: dyn.Resource(WorkflowGVR), Chains: chains{}, Pods: policy.Pods{}}
	stepOnce(t, d, def)
	rc := dyn.Resource(WorkflowGVR).Namespace("ml")
	u, err := rc.Get(context.Background(), "vision-r1-train", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(u.Object, map[string]any{"phase": "Error", "message": "invalid spec: templates.main.steps failed to resolve",
		"nodes": map[string]any{"vision-r1-train": map[string]any{"type": "Steps", "phase": "Error"}}}, "status")
	if _, err := rc.Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := stepOnce(t, d, def)
	if st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "invalid spec") {
		t.Errorf("Step = %s %+v; want failed with Argo's message", st.Phase, st.Stages[0])
	}
	// A failed pod step is autofix's to remediate: the stage waits for it.
	_ = unstructured.SetNestedField(u.Object, map[string]any{"type": "Pod", "phase": "Failed"}, "status", "nodes", "vision-r1-train-1")
	if _, err := rc.Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := stepOnce(t, d, def); st.Phase != Running || !strings.Contains(st.Stages[0].Message, "waiting for autofix serve") {
		t.Errorf("with a failed pod step: %s %+v; want running, waiting for autofix to record it", st.Phase, st.Stages[0])
	}
}

func TestAWorkflowStageIsRefused(t *testing.T) {
	def, err := Parse([]byte(trainAsWorkflow))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("without Workflow enabled", func(t *testing.T) {
		st := stepOnce(t, &Driver{Client: fake.NewClientset(), Chains: chains{}}, def)
		if st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "stages[0].workflow: Workflow stages run only") {
			t.Errorf("Step = %s %+v", st.Phase, st.Stages[0])
		}
	})
	t.Run("the pod policy holds every template, and a pod spec patch is refused", func(t *testing.T) {
		for _, tt := range []struct{ from, to, want string }{
			{"container: {image: trainer,", "container: {image: trainer, securityContext: {privileged: true},",
				"stages[0].workflow.templates[2].spec.containers[0].securityContext.privileged"},
			{"        - name: main\n", "        - name: main\n          podSpecPatch: '{}'\n", "stages[0].workflow.templates[0].podSpecPatch"},
		} {
			def, err := Parse([]byte(strings.Replace(trainAsWorkflow, tt.from, tt.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			dyn := workflows()
			st := stepOnce(t, &Driver{Client: fake.NewClientset(), Workflows: dyn.Resource(WorkflowGVR), Chains: chains{}}, def)
			if st.Phase != Failed || !strings.Contains(st.Stages[0].Message, tt.want) {
				t.Errorf("Step = %s %+v, want failed naming %s", st.Phase, st.Stages[0], tt.want)
			}
			if n := len(dyn.Actions()); n != 0 {
				t.Errorf("%d Workflow actions, want none", n)
			}
		}
	})
	for _, tt := range []struct{ name, from, to, want string }{
		{"no entrypoint", "      entrypoint: main\n", "", "stages[0].workflow.entrypoint: required"},
		{"a WorkflowTemplate", "      entrypoint: main\n", "      entrypoint: main\n      workflowTemplateRef: {name: shared}\n",
			"stages[0].workflow.workflowTemplateRef"},
		{"a template that is not an object", "        - name: main\n", "        - 7\n        - name: main\n", "stages[0].workflow.templates[0]: want an object"},
	} {
		if _, err := Parse([]byte(strings.Replace(trainAsWorkflow, tt.from, tt.to, 1))); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse = %v, want %q", tt.name, err, tt.want)
		}
	}
}
