package remediate

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/autofix/autofix/policy"
)

// TestCheckWorkflowSpecSeesEveryPod: every way an Argo Workflow puts a container in
// a pod (or an object in the cluster) is held to the pod policy, or refused when
// autofix cannot see what it would run. Each spec below runs a privileged container
// under a policy that does not allow one.
func TestCheckWorkflowSpecSeesEveryPod(t *testing.T) {
	const priv = `{"image":"busybox","securityContext":{"privileged":true}}`
	for _, tc := range []struct{ name, spec string }{
		{"a container set", `{"entrypoint":"m","templates":[{"name":"m","containerSet":{"containers":[{"name":"a","image":"busybox","securityContext":{"privileged":true}}]}}]}`},
		{"an inline template of a step", `{"entrypoint":"m","templates":[{"name":"m","steps":[[{"name":"s","inline":{"container":` + priv + `}}]]}]}`},
		{"an inline template of a DAG task", `{"entrypoint":"m","templates":[{"name":"m","dag":{"tasks":[{"name":"t","inline":{"container":` + priv + `}}]}}]}`},
		{"a step running a WorkflowTemplate's template", `{"entrypoint":"m","templates":[{"name":"m","steps":[[{"name":"s","templateRef":{"name":"shared","template":"root"}}]]}]}`},
		{"a DAG task running a ClusterWorkflowTemplate's template", `{"entrypoint":"m","templates":[{"name":"m","dag":{"tasks":[{"name":"t","templateRef":{"name":"shared","template":"root","clusterScope":true}}]}}]}`},
		{"an exit hook running a WorkflowTemplate's template", `{"entrypoint":"m","hooks":{"exit":{"templateRef":{"name":"shared","template":"root"}}},"templates":[{"name":"m","container":{"image":"busybox"}}]}`},
		{"a step's hook running a WorkflowTemplate's template", `{"entrypoint":"m","templates":[{"name":"m","steps":[[{"name":"s","template":"c","hooks":{"running":{"expression":"true","templateRef":{"name":"shared","template":"root"}}}}]]},{"name":"c","container":{"image":"busybox"}}]}`},
		{"a DAG task's hook running a WorkflowTemplate's template", `{"entrypoint":"m","templates":[{"name":"m","dag":{"tasks":[{"name":"t","template":"c","hooks":{"exit":{"templateRef":{"name":"shared","template":"root"}}}}]}},{"name":"c","container":{"image":"busybox"}}]}`},
		{"template defaults", `{"entrypoint":"m","templateDefaults":{"container":` + priv + `},"templates":[{"name":"m","container":{"image":"busybox"}}]}`},
		{"a resource template creating a pod", `{"entrypoint":"m","templates":[{"name":"m","resource":{"action":"create","manifest":"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {privileged: true}\n"}}]}`},
		{"the Workflow's pod metadata", `{"entrypoint":"m","podMetadata":{"annotations":{"seccomp.security.alpha.kubernetes.io/pod":"unconfined"}},"templates":[{"name":"m","container":{"image":"busybox"}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var spec map[string]any
			if err := json.Unmarshal([]byte(tc.spec), &spec); err != nil {
				t.Fatal(err)
			}
			if err := CheckWorkflowSpec(spec, "spec", policy.Pods{}); err == nil {
				t.Errorf("CheckWorkflowSpec = nil, want the privileged pod refused")
			}
		})
	}
}

// TestWorkflowAttemptDropsStoredTemplates: the failed Workflow's status is anyone's
// who may edit the Workflow (no status subresource); the templates of
// WorkflowTemplates its controller cached there, which the pod policy never sees,
// do not go into the Workflow autofix creates.
func TestWorkflowAttemptDropsStoredTemplates(t *testing.T) {
	wf := failedWorkflow()
	wf.Object["status"].(map[string]any)["storedTemplates"] = map[string]any{
		"namespaced/shared/root": map[string]any{"name": "root",
			"container": map[string]any{"image": "busybox", "securityContext": map[string]any{"privileged": true}}}}
	out, err := newWorkflowsAdapter(t, workflowClient(), policy.Pods{}).NewAttempt(wf, argoNodeID("pipe", "pipe[1].train(1)"), workflowSubmission())
	if err != nil {
		t.Fatal(err)
	}
	if st, found := out.Object["status"].(map[string]any)["storedTemplates"]; found {
		t.Errorf("the attempt's status.storedTemplates = %v, want none", st)
	}
}

// TestWorkflowAttemptOfASingleStepWorkflow: a Workflow whose entrypoint is a
// container template has one node, its own, a pod step (id: the Workflow's name).
// When that step failed, the attempt must run it again: its status keeps no node
// of that failed step (a node in phase Failed is one Argo's controller takes as
// done, and the attempt would fail without running anything).
func TestWorkflowAttemptOfASingleStepWorkflow(t *testing.T) {
	failed := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": "solo", "namespace": "ml", "uid": "wf-uid-1", "creationTimestamp": wfAt(0)},
		"spec": map[string]any{"entrypoint": "train", "templates": []any{
			map[string]any{"name": "train", "container": map[string]any{"image": "trainer:1",
				"resources": map[string]any{"limits": map[string]any{"memory": "2Gi"}}}}}},
		"status": map[string]any{"phase": "Failed", "startedAt": wfAt(0), "finishedAt": wfAt(30), "nodes": map[string]any{
			"solo": map[string]any{"id": "solo", "name": "solo", "displayName": "solo", "type": argoNodePod, "templateName": "train",
				"phase": "Failed", "message": "OOMKilled (exit code 137)", "startedAt": wfAt(0), "finishedAt": wfAt(30)}}},
	}}
	sub := workflowSubmission()
	sub.FailedJob, sub.Name, sub.Original = "solo", "solo-af2", "solo"
	sub.Option.Params = nil
	out, err := newWorkflowsAdapter(t, workflowClient(), policy.Pods{}).NewAttempt(failed, "solo", sub)
	if err != nil {
		t.Fatal(err)
	}
	nodes, _, _ := unstructured.NestedMap(out.Object, "status", "nodes")
	for id, n := range nodes {
		if phase, _, _ := unstructured.NestedString(n.(map[string]any), "phase"); phase != argoSucceeded {
			t.Errorf("the attempt's status.nodes[%s] is in phase %q; want the failed step left out, to run again", id, phase)
		}
	}
}
