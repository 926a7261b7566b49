package remediate

import (
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// workflowAttemptStatus is the status an attempt named name is created with, so
// that Argo's controller runs only what did not succeed in the failed Workflow wf
// (raw, as read). The Workflow CRD has no status subresource: a status written at
// creation is the controller's starting point, as `argo resubmit --memoized` does.
// Each node is renamed into the attempt (its name's prefix, and the id Argo derives
// from it):
//   - a pod step that succeeded is kept as it is — succeeded, its outputs, times
//     and node as they were, its message naming the node of the failed Workflow —
//     which the controller takes as done and does not run again. (Argo's memoized
//     resubmission turns it into a skipped node instead; a DAG task that depends
//     on "prep.Succeeded", or a step whose condition reads {{steps.prep.status}},
//     would then take another branch than in the failed run.)
//   - a node of steps, a DAG or a step group that succeeded is kept as it is;
//   - the Workflow's own node (unless it is the pod step that failed), and any
//     other that did not succeed but holds a kept node, is kept running (message
//     and end cleared), for the controller to go on from;
//   - everything else (the failed and retried pod steps, what was omitted or
//     skipped after them, the exit handler's nodes) is left out: the controller
//     runs it afresh, a retried step with its full retry budget.
func workflowAttemptStatus(failed *unstructured.Unstructured, wf *argoWorkflow, name string) map[string]any {
	nodes := wf.Status.Nodes
	raw, _, _ := unstructured.NestedMap(failed.Object, "status", "nodes")
	keep := map[string]bool{}
	onExit := wf.Name + ".onExit"
	memo := map[string]bool{} // whether a node is kept, or holds one that is (false while it is looked at: no cycles)
	var holds func(id string) bool
	holds = func(id string) bool {
		if v, done := memo[id]; done {
			return v
		}
		memo[id] = false
		n, ok := nodes[id]
		if !ok || strings.HasPrefix(n.Name, onExit) || !strings.HasPrefix(n.Name, wf.Name) {
			return false
		}
		found := n.Phase == argoSucceeded
		if !found && n.Type != argoNodePod {
			for _, c := range n.Children {
				found = holds(c) || found
			}
		}
		memo[id] = found
		return found
	}
	for id, n := range nodes {
		// The Workflow's own node is kept for the controller to go on from, unless it is
		// the pod step that failed (a Workflow whose entrypoint is a container
		// template): that runs again.
		if (id == wf.Name && strings.HasPrefix(n.Name, wf.Name) && n.Type != argoNodePod) || holds(id) {
			keep[id] = true
		}
	}
	rename := func(id string) string { return argoNodeID(name, name+strings.TrimPrefix(nodes[id].Name, wf.Name)) }
	renamed := func(ids []string) []any {
		var out []any
		for _, c := range ids {
			if keep[c] {
				out = append(out, rename(c))
			}
		}
		return out
	}
	out := map[string]any{}
	for id := range keep {
		m, isMap := raw[id].(map[string]any) // a copy (NestedMap's)
		if !isMap {
			continue
		}
		n := nodes[id]
		newID := rename(id)
		m["id"], m["name"] = newID, name+strings.TrimPrefix(n.Name, wf.Name)
		if id == wf.Name {
			m["displayName"] = name
		}
		if b, ok := m["boundaryID"].(string); ok && b != "" {
			if _, known := nodes[b]; known {
				m["boundaryID"] = rename(b)
			} else {
				delete(m, "boundaryID")
			}
		}
		for _, k := range []string{"children", "outboundNodes"} {
			ids, _, _ := unstructured.NestedStringSlice(m, k)
			if r := renamed(ids); len(r) > 0 {
				m[k] = r
			} else {
				delete(m, k)
			}
		}
		switch {
		case n.Type == argoNodePod:
			m["message"] = "succeeded in workflow " + wf.Name + " (node " + id + "); kept, not run again"
		case n.Phase != argoSucceeded:
			m["phase"] = "Running"
			delete(m, "message")
			delete(m, "finishedAt")
		}
		out[newID] = m
	}
	status := map[string]any{"nodes": out,
		"conditions": []any{map[string]any{"type": "Completed", "status": "False"}}}
	// Not the failed Workflow's storedTemplates: the templates of WorkflowTemplates
	// its controller cached (anyone who may edit the Workflow may write them), which
	// the pod policy does not see, and which an attempt never runs (checkWorkflowPods
	// refuses a step that runs a WorkflowTemplate's template).
	return status
}
