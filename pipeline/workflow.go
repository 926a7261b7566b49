package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// WorkflowGVR is Argo's Workflow, which a Workflow stage runs.
var WorkflowGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}

// workflowMaxName is the longest Workflow name autofix gives a stage's Workflow or
// its attempts: Argo labels a Workflow's pods with its name, and a label value is
// at most 63 characters.
const workflowMaxName = 63

// validateWorkflow checks a Workflow stage's spec (field: the stage's field): an
// entrypoint and the templates, written in full (a stage's Workflow does not
// reference a WorkflowTemplate, which the pod policy could not see).
func validateWorkflow(spec map[string]any, field string) error {
	if e, _, _ := unstructured.NestedString(spec, "entrypoint"); e == "" {
		return fmt.Errorf("%s.entrypoint: required", field)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(spec, "workflowTemplateRef"); found {
		return fmt.Errorf("%s.workflowTemplateRef: a stage's Workflow is written in full (its templates), so that the pod policy sees every pod", field)
	}
	templates, found, err := unstructured.NestedSlice(spec, "templates")
	switch {
	case err != nil:
		return fmt.Errorf("%s.templates: %w", field, err)
	case !found || len(templates) == 0:
		return fmt.Errorf("%s.templates: at least one", field)
	}
	for i, t := range templates {
		if _, ok := t.(map[string]any); !ok {
			return fmt.Errorf("%s.templates[%d]: want an object", field, i)
		}
	}
	return nil
}

// newWorkflow is the Workflow of stage s of run: its spec with the stage's
// artifacts in the environment of every container and script template, and the
// stage's labels and annotations.
func (d *Driver) newWorkflow(def *Definition, run string, s *Stage, input string) (*unstructured.Unstructured, error) {
	spec := runtime.DeepCopyJSON(s.Workflow)
	templates, _, err := unstructured.NestedSlice(spec, "templates")
	if err != nil {
		return nil, err
	}
	env := []any{map[string]any{"name": "ARTIFACT_IN", "value": input}, map[string]any{"name": "ARTIFACT_OUT", "value": artifact(def, run, s.Name)}}
	for i, t := range templates {
		tmpl, ok := t.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("templates[%d]: want an object", i)
		}
		for _, key := range []string{"container", "script"} {
			c, ok := tmpl[key].(map[string]any)
			if !ok {
				continue
			}
			have, _ := c["env"].([]any)
			c["env"] = append(append([]any(nil), have...), runtime.DeepCopyJSONValue(env).([]any)...)
		}
	}
	if err := unstructured.SetNestedSlice(spec, templates, "templates"); err != nil {
		return nil, err
	}
	l, ann, err := stageMeta(def, run, s)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "spec": spec}}
	u.SetName(jobName(def, run, s))
	u.SetNamespace(def.Namespace)
	u.SetLabels(l)
	u.SetAnnotations(ann)
	return u, nil
}

// workflowStage runs a Workflow stage (runStage); its attempts are new Workflows
// (the Argo adapter's, which keep the steps that succeeded).
func (d *Driver) workflowStage(ctx context.Context, def *Definition, run string, s *Stage, input string) (StageStatus, error) {
	if d.Workflows == nil { // observing only: Step refuses to run it so
		return StageStatus{Name: s.Name, Phase: Pending, Artifact: artifact(def, run, s.Name),
			Message: "Workflows are not read: kubernetes.kinds does not name Workflow"}, nil
	}
	w := unstructuredWorkloads(d.Workflows.Namespace(def.Namespace), "workflow",
		func() (*unstructured.Unstructured, error) { return d.newWorkflow(def, run, s, input) },
		func(u *unstructured.Unstructured) (succeeded, failed bool) {
			phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
			return phase == "Succeeded", phase == "Failed" || phase == "Error"
		})
	w.unfixable = workflowUnfixable
	return runStage(ctx, d, def, run, s, w)
}

// workflowUnfixable says why a failed Workflow none of whose pod steps failed
// (one Argo refused, or stopped by hand) gets no fix: the Argo adapter reports
// only a failed pod step's failure, which a retry with other resources may mend.
func workflowUnfixable(u *unstructured.Unstructured) string {
	nodes, _, _ := unstructured.NestedMap(u.Object, "status", "nodes")
	for _, n := range nodes {
		node, _ := n.(map[string]any)
		typ, _, _ := unstructured.NestedString(node, "type")
		phase, _, _ := unstructured.NestedString(node, "phase")
		if typ == "Pod" && (phase == "Failed" || phase == "Error") {
			return ""
		}
	}
	msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
	if len(msg) > 512 {
		msg = strings.ToValidUTF8(msg[:512], "") + "..." // not half a character at the cut
	}
	return fmt.Sprintf("%s failed before any step's pod did, which no fix of autofix's mends: %s", u.GetName(), msg)
}

// workflowName checks that stage s's Workflow of run, and its attempts, have names
// Argo can label its pods with.
func workflowName(def *Definition, run string, s *Stage) error {
	longest := jobName(def, run, s) + "-af" + strconv.Itoa(s.MaxAttempts)
	if len(longest) > workflowMaxName {
		return fmt.Errorf("the Workflow's attempts would be named up to %q, %d characters; Argo labels pods with it (at most %d): "+
			"shorten the pipeline, run or stage name", longest, len(longest), workflowMaxName)
	}
	return nil
}
