package remediate

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/policy"
)

func workflowSubmission() *Submission {
	return &Submission{Namespace: "ml", FailedJob: "pipe", FailedUID: "wf-uid-1", Name: "pipe-af2", Chain: "ml/pipe", Original: "pipe",
		Attempt: 2, Remediation: "k8s-workflow-wf-uid-1", Token: "tok",
		Option: failure.Option{Resources: failure.Resources{MemoryBytes: 4 << 30}, Params: map[string]string{"batch": "32"},
			AvoidNodes: []string{"node-7"}, DeadlineSeconds: 3600}}
}

func newWorkflowsAdapter(t *testing.T, dyn *dynamicfake.FakeDynamicClient, pods policy.Pods) *Workflows {
	t.Helper()
	a, err := NewWorkflows(fake.NewClientset(), dyn, AdapterOptions{Pods: pods})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestWorkflowNewAttempt(t *testing.T) {
	a := newWorkflowsAdapter(t, workflowClient(), policy.Pods{})
	failed := failedWorkflow()
	before := failed.DeepCopy()
	node := argoNodeID("pipe", "pipe[1].train(1)")
	got, err := a.NewAttempt(failed, node, workflowSubmission())
	if err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, failed.Object, before.Object) {
		t.Error("NewAttempt changed the failed Workflow")
	}
	wf := decoded(t, got)
	if wf.Name != "pipe-af2" || wf.Namespace != "ml" {
		t.Errorf("attempt %s/%s, want ml/pipe-af2", wf.Namespace, wf.Name)
	}
	train := wf.Spec.template("train").Container
	if m := train.Resources.Limits[corev1.ResourceMemory]; m.Value() != 4<<30 || !slices.Equal(train.Args, []string{"--batch=32"}) {
		t.Errorf("train: memory %s, args %v; want 4Gi and --batch=32", m.String(), train.Args)
	}
	if m := wf.Spec.template("prep").Container.Resources.Limits[corev1.ResourceMemory]; m.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("prep asks for %s, want its 1Gi: its step did not fail", m.String())
	}
	tmpl := got.Object["spec"].(map[string]any)["templates"].([]any)[3].(map[string]any)
	if tmpl["activeDeadlineSeconds"] != int64(3600) || tmpl["retryStrategy"] == nil || wf.Spec.template("train").Affinity == nil {
		t.Errorf("train template %v; want the deadline, its retry strategy kept and node-7 avoided", tmpl)
	}
	spec := got.Object["spec"].(map[string]any)
	if _, ok := spec["shutdown"]; ok || spec["activeDeadlineSeconds"] != nil || spec["onExit"] != "notify" {
		t.Errorf("spec %v; want no shutdown nor zero deadline, the exit handler kept", spec)
	}
	l, an := got.GetLabels(), got.GetAnnotations()
	if l[failure.LabelManaged] != "true" || l[failure.LabelOriginal] != "pipe" || l[failure.LabelAttempt] != "2" || l["team"] != "nlp" ||
		l[argoLabelResubmitted] != "pipe" || l["workflows.argoproj.io/phase"] != "" || l["workflows.argoproj.io/completed"] != "" {
		t.Errorf("labels %v; want the chain's, the Workflow's own, Argo's resubmitted-from, not its phase or completion", l)
	}
	if an[failure.AnnotationRemediation] != "k8s-workflow-wf-uid-1" || an[failure.AnnotationAttemptToken] != "tok" ||
		an[AnnotationArgoTemplate] != "train" || an["note"] != "kept" || an[failure.AnnotationParams] == "" {
		t.Errorf("annotations %v", an)
	}
	nodes := wf.Status.Nodes
	want := map[string]string{"pipe-af2": "Running", "pipe-af2[0]": "Succeeded", "pipe-af2[0].prep": "Succeeded"}
	if len(nodes) != len(want) {
		t.Errorf("status.nodes %v; want %v", nodeNames(nodes), want)
	}
	for name, phase := range want {
		n, ok := nodes[argoNodeID("pipe-af2", name)]
		if !ok || n.Phase != phase || n.Name != name {
			t.Errorf("node %s = %+v (present %v), want phase %s", name, n, ok, phase)
		}
	}
	root := nodes["pipe-af2"]
	if !slices.Equal(root.Children, []string{argoNodeID("pipe-af2", "pipe-af2[0]")}) || root.Message != "" || !root.FinishedAt.IsZero() {
		t.Errorf("root node %+v; want its kept child renamed, no message nor end", root)
	}
	if prep := nodes[argoNodeID("pipe-af2", "pipe-af2[0].prep")]; prep.Type != argoNodePod || len(prep.Children) != 0 ||
		!strings.Contains(prep.Message, "succeeded in workflow pipe") || prep.FinishedAt.UTC().Format(time.RFC3339) != wfAt(10) {
		t.Errorf("prep %+v; want the pod step kept as it ran, its failed successors left for the controller", prep)
	}
}

func nodeNames(nodes map[string]argoNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name+"="+n.Phase)
	}
	slices.Sort(out)
	return out
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return string(x) == string(y)
}

func TestWorkflowNewAttemptRefuses(t *testing.T) {
	node := argoNodeID("pipe", "pipe[1].train(1)")
	edit := func(f func(u *unstructured.Unstructured)) *unstructured.Unstructured {
		u := failedWorkflow()
		f(u)
		return u
	}
	templates := func(u *unstructured.Unstructured) []any {
		return u.Object["spec"].(map[string]any)["templates"].([]any)
	}
	for _, tc := range []struct {
		name string
		wf   *unstructured.Unstructured
		node string
		want string
	}{
		{"a node that is not a failed pod step", failedWorkflow(), argoNodeID("pipe", "pipe[0].prep"), "no failed pod step"},
		{"a pod spec patch", edit(func(u *unstructured.Unstructured) { templates(u)[3].(map[string]any)["podSpecPatch"] = "{}" }), node,
			"spec.templates[3].podSpecPatch"},
		{"a privileged container the policy does not allow", edit(func(u *unstructured.Unstructured) {
			templates(u)[1].(map[string]any)["container"].(map[string]any)["securityContext"] = map[string]any{"privileged": true}
		}), node, "spec.templates[1]"},
		{"a WorkflowTemplate's spec its controller did not store", edit(func(u *unstructured.Unstructured) {
			u.Object["spec"].(map[string]any)["workflowTemplateRef"] = map[string]any{"name": "shared"}
		}), node, "WorkflowTemplate shared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newWorkflowsAdapter(t, workflowClient(), policy.Pods{}).NewAttempt(tc.wf, tc.node, workflowSubmission())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewAttempt = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestWorkflowNewAttemptFromAWorkflowTemplate(t *testing.T) {
	u := failedWorkflow()
	spec := u.Object["spec"].(map[string]any)
	u.Object["spec"] = map[string]any{"workflowTemplateRef": map[string]any{"name": "shared"}, "arguments": map[string]any{}}
	spec["workflowTemplateRef"] = map[string]any{"name": "shared"}
	u.Object["status"].(map[string]any)["storedWorkflowTemplateSpec"] = spec
	got, err := newWorkflowsAdapter(t, workflowClient(), policy.Pods{}).NewAttempt(u, argoNodeID("pipe", "pipe[1].train(1)"), workflowSubmission())
	if err != nil {
		t.Fatal(err)
	}
	wf := decoded(t, got)
	if wf.Spec.WorkflowTemplateRef != nil || wf.Spec.template("train") == nil {
		t.Fatalf("attempt spec %+v; want the stored spec inlined, without the reference", wf.Spec)
	}
	if m := wf.Spec.template("train").Container.Resources.Limits[corev1.ResourceMemory]; m.Value() != 4<<30 {
		t.Errorf("train asks for %s, want 4Gi", m.String())
	}
}

func TestWorkflowCreateFromIsIdempotentAndNeverTakesAnothers(t *testing.T) {
	failed := failedWorkflow()
	dyn := workflowClient(failed)
	a := newWorkflowsAdapter(t, dyn, policy.Pods{})
	ctx := context.Background()
	v := Verified{Workflow: failed, WorkflowNode: argoNodeID("pipe", "pipe[1].train(1)")}
	for range 2 {
		if err := a.CreateFrom(ctx, workflowSubmission(), v); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := dyn.Resource(WorkflowGVR).Namespace("ml").List(ctx, metav1.ListOptions{})
	if len(list.Items) != 2 {
		t.Errorf("%d Workflows, want the failed one and one attempt", len(list.Items))
	}
	if done, err := a.Created(ctx, workflowSubmission()); !done || err != nil {
		t.Errorf("Created = %v, %v; want the attempt found", done, err)
	}
	theirs := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": "pipe-af3", "namespace": "ml", "labels": map[string]any{"owner": "them"}}}}
	dyn = workflowClient(failedWorkflow(), theirs)
	a = newWorkflowsAdapter(t, dyn, policy.Pods{})
	sub := workflowSubmission()
	sub.Name, sub.Attempt = "pipe-af3", 3
	if err := a.CreateFrom(ctx, sub, v); !errors.Is(err, ErrCannotSubmit) {
		t.Errorf("CreateFrom over another's Workflow = %v, want ErrCannotSubmit", err)
	}
	for _, act := range dyn.Actions() {
		if verb := act.GetVerb(); verb != "get" && verb != "create" {
			t.Errorf("the adapter did %s %s: it only reads and creates", verb, act.GetResource().Resource)
		}
	}
	other := failedWorkflow()
	other.SetUID("someone-else")
	if a.CreateFrom(ctx, workflowSubmission(), Verified{Workflow: other, WorkflowNode: v.WorkflowNode}) == nil {
		t.Error("CreateFrom built a fix from a Workflow other than the one verified")
	}
}

func workflowEvent(t *testing.T, a *Workflows) *failure.Event {
	t.Helper()
	pub := &events{}
	c := workflowTestController(pub, nil, WatcherOptions{})
	if err := c.sync(context.Background(), failedWorkflow()); err != nil || len(pub.evs) != 1 {
		t.Fatalf("sync: %v, %d events", err, len(pub.evs))
	}
	return pub.evs[0]
}

func TestWorkflowVerify(t *testing.T) {
	owned := failedWorkflow()
	owned.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "x/v1", Kind: "Pipeline", Name: "p", UID: "p1", Controller: new(true)}})
	cron := failedWorkflow()
	cron.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "CronWorkflow", Name: "nightly", UID: "c1", Controller: new(true)}})
	running := failedWorkflow()
	_ = unstructured.SetNestedField(running.Object, "Running", "status", "phase")
	for _, tc := range []struct {
		name string
		wf   *unstructured.Unstructured
		edit func(ev *failure.Event)
		sel  string
		want string // "" verified
	}{
		{"the event of a failed Workflow", failedWorkflow(), nil, "", ""},
		{"a CronWorkflow's run", cron, nil, "", ""},
		{"another id", failedWorkflow(), func(ev *failure.Event) { ev.ID = "k8s-workflow-other" }, "", "is reported as"},
		{"another node claimed", failedWorkflow(), func(ev *failure.Event) { ev.Job.Labels[LabelArgoNode] = "pipe-1" }, "", "failed first"},
		{"a Workflow another object controls", owned, nil, "", "controlled by Pipeline p"},
		{"a Workflow still running", running, nil, "", "has not failed"},
		{"a Workflow the selector leaves out", failedWorkflow(), nil, "team=cv", "selector"},
		{"a namespace not watched", failedWorkflow(), func(ev *failure.Event) { ev.Job.Namespace = "prod" }, "", "not one autofix watches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewWorkflows(fake.NewClientset(), workflowClient(tc.wf), AdapterOptions{Watch: WatcherOptions{Namespaces: []string{"ml"}, Selector: tc.sel}})
			if err != nil {
				t.Fatal(err)
			}
			ev := workflowEvent(t, a)
			if tc.edit != nil {
				tc.edit(ev)
			}
			v, err := a.Verify(context.Background(), ev)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Verify = %v", err)
			case tc.want == "":
				if v.WorkflowNode != argoNodeID("pipe", "pipe[1].train(1)") || v.Workflow == nil || v.Job.Labels[LabelArgoTemplate] != "train" {
					t.Errorf("verified %+v; want the last retry of train", v)
				}
			case !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.want):
				t.Errorf("Verify = %v, want ErrUnverified naming %q", err, tc.want)
			}
		})
	}
}

func TestAdaptersRouteWorkflowEvents(t *testing.T) {
	if got := EventKind(WorkflowEventID("u")); got != KindWorkflow {
		t.Errorf("EventKind(%s) = %s, want %s", WorkflowEventID("u"), got, KindWorkflow)
	}
	if !slices.Contains(Kinds, KindWorkflow) {
		t.Errorf("Kinds %v, want %s among them", Kinds, KindWorkflow)
	}
}

// TestWorkflowNewAttemptOfALongName: Argo's resubmitted-from label names the failed
// Workflow only when its name is a label value (63 characters at most).
func TestWorkflowNewAttemptOfALongName(t *testing.T) {
	failed := failedWorkflow()
	failed.SetName("pipe-" + strings.Repeat("x", 70))
	sub := workflowSubmission()
	sub.FailedJob = failed.GetName()
	got, err := newWorkflowsAdapter(t, workflowClient(), policy.Pods{}).NewAttempt(failed, argoNodeID("pipe", "pipe[1].train(1)"), sub)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := got.GetLabels()[argoLabelResubmitted]; ok {
		t.Errorf("label %s = %q, not a label value; want it left out", argoLabelResubmitted, v)
	}
}
