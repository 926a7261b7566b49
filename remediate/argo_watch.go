package remediate

import (
	"cmp"
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/autofix/autofix/failure"
)

// workflowController syncs the Workflows the Workflow adapter's watch hands it
// (dynamicWatch). A Workflow's pods are read from the API server when there is
// something to report (a failure, or an attempt's end), not cached.
type workflowController struct {
	*Watcher // publishing, pod signals, peaks, what was sent and reported
}

// Watch watches the Workflows of the adapter's namespaces until ctx ends: a
// Workflow whose phase is Failed or Error and one of whose pod steps failed becomes
// one event (WorkflowEventID), and a Workflow autofix created that ends is reported
// to sink.
func (a *Workflows) Watch(ctx context.Context, pub Publisher, sink OutcomeSink) error {
	w := newWatcher(a.client, pub, sink, a.o.Watch)
	if w.err != nil {
		return w.err
	}
	c := &workflowController{Watcher: w}
	return dynamicWatch{kind: "workflow", gvr: WorkflowGVR,
		unsynced: "is the Workflow CRD installed, and may autofix list workflows there?",
		sync:     c.sync}.run(ctx, a.dyn, a.o.Watch.Namespaces, w.o.Selector, w.o.Log)
}

// sync reports how a Workflow autofix created ended, and publishes the failure of a
// failed Workflow once.
func (c *workflowController) sync(ctx context.Context, u *unstructured.Unstructured) error {
	if !c.selectedLabels(u.GetLabels()) {
		return nil
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	if phase != argoSucceeded && !argoFailedPhase(phase) {
		return nil
	}
	wf, err := decodeWorkflow(u)
	if err != nil {
		c.o.Log.Warn("watch: a workflow autofix cannot read is passed over", "err", err)
		return nil // its status will not decode any better on a retry
	}
	var pods []*corev1.Pod
	podsOf := func() ([]*corev1.Pod, error) {
		if pods == nil {
			p, err := readWorkflowPods(ctx, c.Watcher, wf)
			if err != nil {
				return nil, err
			}
			pods = p
		}
		return pods, nil
	}
	var usage runUsage
	if err := c.trackWorkflow(ctx, wf, podsOf, &usage); err != nil {
		return err
	}
	end := cmp.Or(wf.Status.FinishedAt.Time, wf.CreationTimestamp.Time)
	id := WorkflowEventID(string(wf.UID))
	if !argoFailedPhase(phase) || c.sent(id) || time.Since(end) > c.o.MaxAge {
		return nil
	}
	rc := workflowRootCause(wf)
	if rc == nil {
		c.o.Log.Info("watch: a failed workflow with no failed pod step is not reported (nothing to size)",
			"workflow", wf.Namespace+"/"+wf.Name, "message", wf.Status.Message)
		c.published.add(id, time.Now())
		return nil
	}
	p, err := podsOf()
	if err != nil {
		return err
	}
	return c.publish(ctx, c.workflowEvent(ctx, wf, rc, p, &usage))
}

// readWorkflowPods reads the pods Argo ran for wf: those labelled with its name
// that it controls (a label is anyone's to copy).
func readWorkflowPods(ctx context.Context, w *Watcher, wf *argoWorkflow) ([]*corev1.Pod, error) {
	list, err := w.client.CoreV1().Pods(wf.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{argoLabelWorkflow: wf.Name}.String()})
	if err != nil {
		return nil, fmt.Errorf("list the pods of workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}
	pods := []*corev1.Pod{}
	for i := range list.Items {
		p := &list.Items[i]
		if owner := metav1.GetControllerOfNoCopy(p); owner != nil && owner.UID == wf.UID {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// trackWorkflow reports how a Workflow autofix created ended, once it has: its
// configuration is that of the template it sized (AnnotationArgoTemplate), its
// runtime from its start to its end, its cost every pod's, its peaks those of that
// template's pods.
func (c *workflowController) trackWorkflow(ctx context.Context, wf *argoWorkflow, podsOf func() ([]*corev1.Pod, error), u *runUsage) error {
	id := wf.Annotations[failure.AnnotationRemediation]
	if c.sink == nil || wf.Labels[failure.LabelManaged] != "true" || id == "" || c.finished.has(string(wf.UID)) {
		return nil
	}
	succeeded := wf.Status.Phase == argoSucceeded
	tmpl := wf.Annotations[AnnotationArgoTemplate]
	j := describeWorkflow(wf, tmpl, c.o.GPUTypeLabel)
	o := failure.Outcome{Template: j.Template, Attempt: j.Attempt, Succeeded: succeeded, Resources: j.Resources, Params: j.Params}
	end := cmp.Or(wf.Status.FinishedAt.Time, time.Now())
	if !wf.Status.StartedAt.IsZero() {
		o.DurationSeconds = end.Sub(wf.Status.StartedAt.Time).Seconds()
	}
	pods, err := podsOf()
	if err != nil {
		return err
	}
	o.Cost, o.Unpriced = priceWorkflow(c.o.Catalogue, wf, pods, end, c.o.GPUTypeLabel)
	var (
		ran   []*corev1.Pod
		steps []any
	)
	for _, n := range wf.Status.Nodes {
		if n.Type == argoNodePod && n.TemplateName == tmpl {
			if p := nodePod(pods, n.ID); p != nil {
				ran = append(ran, p)
			}
			steps = append(steps, n.DisplayName+"="+n.Phase)
		}
	}
	if t := wf.spec().template(tmpl); t != nil && t.container() != nil {
		o.Usage = c.measure(ctx, u, workflowProbe(wf, t), ran, end)
	}
	claim := AttemptJob{Remediation: id, Namespace: wf.Namespace, Name: wf.Name, Token: wf.Annotations[failure.AnnotationAttemptToken]}
	if err := c.sink.Finished(ctx, claim, succeeded, o); err != nil {
		return err
	}
	c.o.Log.Info("watch: an argo workflow autofix created ended", "workflow", wf.Namespace+"/"+wf.Name, "phase", wf.Status.Phase,
		"template", tmpl, "steps", steps)
	c.finished.add(string(wf.UID), time.Now())
	return nil
}
