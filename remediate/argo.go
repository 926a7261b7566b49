package remediate

import (
	"cmp"
	"context"
	"maps"
	"regexp"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autofix/autofix/failure"
)

// Argo Workflows (argoproj.io/v1alpha1). autofix reads and writes Workflows as
// unstructured objects, decoding only the fields below: Argo's Go types would bring
// grpc, gogo and logrus into the project (docs/decisions.md, "Argo Workflows").

// WorkflowGVR is the resource of Argo's Workflows.
var WorkflowGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}

// workflowEventPrefix starts the id of a Workflow's failure event.
const workflowEventPrefix = "k8s-workflow-"

// What Argo puts on the pods of a Workflow, and the name of the container that runs
// a template's command in them.
const (
	argoLabelWorkflow     = "workflows.argoproj.io/workflow"
	argoAnnotationNodeID  = "workflows.argoproj.io/node-id"
	argoLabelResubmitted  = "workflows.argoproj.io/resubmitted-from-workflow"
	argoMainContainerName = "main"
)

// argoServerLabels are the labels Argo's controller and server write on a Workflow
// (its phase, completion, creator, archiving): an attempt does not carry the failed
// one's.
var argoServerLabels = []string{"workflows.argoproj.io/phase", "workflows.argoproj.io/completed",
	"workflows.argoproj.io/creator", "workflows.argoproj.io/creator-email", "workflows.argoproj.io/creator-preferred-username",
	"workflows.argoproj.io/workflow-archiving-status", argoLabelResubmitted}

// LabelArgoTemplate, LabelArgoNode and LabelArgoStep are the keys, in a Workflow
// failure event's job.labels, of the template, the node id and the step (the
// node's display name, "train(1)") of the pod step that failed (the root cause);
// the pod is under LabelFailedPod.
const (
	LabelArgoTemplate = "autofix.io/argo-template"
	LabelArgoNode     = "autofix.io/argo-node"
	LabelArgoStep     = "autofix.io/argo-step"
)

// AnnotationArgoTemplate names, on a Workflow autofix created, the template whose
// failed step it re-runs: the one whose resources it sized, whose configuration its
// outcome records.
const AnnotationArgoTemplate = "autofix.io/argo-template"

// Argo's node types and phases autofix reads.
const (
	argoNodePod   = "Pod"
	argoNodeRetry = "Retry"

	argoSucceeded = "Succeeded"
	argoFailed    = "Failed"
	argoError     = "Error"
)

// WorkflowEventID is the id of the failure event of one Workflow: a Workflow is one
// attempt, so its uid names the failure whoever publishes it, however often.
func WorkflowEventID(uid string) string { return workflowEventPrefix + uid }

// argoWorkflow is the part of a Workflow autofix reads.
type argoWorkflow struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              argoSpec `json:"spec"`
	Status            struct {
		Phase      string              `json:"phase"`
		Message    string              `json:"message"`
		StartedAt  metav1.Time         `json:"startedAt"`
		FinishedAt metav1.Time         `json:"finishedAt"`
		Nodes      map[string]argoNode `json:"nodes"`
		// StoredSpec is the spec the controller ran: the Workflow's merged over
		// its WorkflowTemplate's, for one that refers to a WorkflowTemplate.
		StoredSpec *argoSpec `json:"storedWorkflowTemplateSpec"`
	} `json:"status"`
}

// argoSpec is the part of a Workflow's spec autofix reads.
type argoSpec struct {
	Templates           []argoTemplate `json:"templates"`
	WorkflowTemplateRef *struct {
		Name string `json:"name"`
	} `json:"workflowTemplateRef"`
	PodSpecPatch    string                     `json:"podSpecPatch"`
	Volumes         []corev1.Volume            `json:"volumes"`
	HostNetwork     bool                       `json:"hostNetwork"`
	SecurityContext *corev1.PodSecurityContext `json:"securityContext"`
	// TemplateDefaults are merged into every template by Argo's controller, and
	// PodMetadata's annotations go on every pod: the pod policy holds them too.
	TemplateDefaults *argoTemplate `json:"templateDefaults"`
	PodMetadata      struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"podMetadata"`
	Hooks map[string]argoHook `json:"hooks"`
}

// argoHook is the part of a lifecycle hook (of a Workflow, a step or a DAG task)
// the pod policy reads: the WorkflowTemplate's template it runs, if it runs one.
type argoHook struct {
	TemplateRef map[string]any `json:"templateRef"`
}

// argoTemplate is the part of a template autofix reads. A script template's
// container fields are inline in its script (beside its source).
type argoTemplate struct {
	Name         string            `json:"name"`
	Container    *corev1.Container `json:"container"`
	Script       *corev1.Container `json:"script"`
	PodSpecPatch string            `json:"podSpecPatch"`
	NodeSelector map[string]string `json:"nodeSelector"`
	Affinity     *corev1.Affinity  `json:"affinity"`
	// What else goes into its pod, which the pod policy holds too.
	InitContainers  []corev1.Container         `json:"initContainers"`
	Sidecars        []corev1.Container         `json:"sidecars"`
	Volumes         []corev1.Volume            `json:"volumes"`
	SecurityContext *corev1.PodSecurityContext `json:"securityContext"`
	Metadata        struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	// The other ways a template runs something: a container set's containers (in
	// one pod), the steps and DAG tasks it calls (an inline template, or a
	// WorkflowTemplate's, which autofix cannot see), and a resource it creates.
	ContainerSet *struct {
		Containers []corev1.Container `json:"containers"`
	} `json:"containerSet"`
	Steps [][]argoStep `json:"steps"`
	DAG   *struct {
		Tasks []argoStep `json:"tasks"`
	} `json:"dag"`
	Resource    map[string]any `json:"resource"`
	TemplateRef map[string]any `json:"templateRef"`
}

// argoStep is the part of a step, or of a DAG task, the pod policy reads: the
// template it runs when that is not one of the Workflow's own.
type argoStep struct {
	Inline      *argoTemplate       `json:"inline"`
	TemplateRef map[string]any      `json:"templateRef"`
	Hooks       map[string]argoHook `json:"hooks"`
}

// argoNode is one node of a Workflow's status.nodes.
type argoNode struct {
	ID           string                           `json:"id"`
	Name         string                           `json:"name"`
	DisplayName  string                           `json:"displayName"`
	Type         string                           `json:"type"`
	TemplateName string                           `json:"templateName"`
	TemplateRef  *struct{ Name, Template string } `json:"templateRef"`
	Phase        string                           `json:"phase"`
	Message      string                           `json:"message"`
	Children     []string                         `json:"children"`
	StartedAt    metav1.Time                      `json:"startedAt"`
	FinishedAt   metav1.Time                      `json:"finishedAt"`
	HostNodeName string                           `json:"hostNodeName"`
}

func argoFailedPhase(phase string) bool { return phase == argoFailed || phase == argoError }

// spec is the spec the Workflow's templates are read from: the one its controller
// stored, for a Workflow that refers to a WorkflowTemplate, else its own.
func (wf *argoWorkflow) spec() *argoSpec {
	if wf.Spec.WorkflowTemplateRef != nil && wf.Status.StoredSpec != nil {
		return wf.Status.StoredSpec
	}
	return &wf.Spec
}

// template returns the template of the spec named name, nil if none.
func (s *argoSpec) template(name string) *argoTemplate {
	for i := range s.Templates {
		if s.Templates[i].Name == name {
			return &s.Templates[i]
		}
	}
	return nil
}

// container is the template's main container (its container, or its script's),
// named as it runs in its pod; nil for a template that runs no container of its own
// (steps, a DAG, a resource, a container set).
func (t *argoTemplate) container() *corev1.Container {
	c := cmp.Or(t.Container, t.Script)
	if c == nil {
		return nil
	}
	c = c.DeepCopy()
	c.Name = argoMainContainerName
	return c
}

// podSpec is the pod spec a template's main container is described in.
func (t *argoTemplate) podSpec() *corev1.PodSpec {
	spec := &corev1.PodSpec{NodeSelector: t.NodeSelector, Affinity: t.Affinity}
	if c := t.container(); c != nil {
		spec.Containers = []corev1.Container{*c}
	}
	return spec
}

// workflowRootCause is the pod step a Workflow's failure stems from: of its failed
// pod steps whose failure the Workflow did not tolerate — one of the nodes that lead
// to it (a step group, a DAG, a retried step, a task it depends on) failed too,
// where a failure tolerated with continueOn leaves its step group succeeded — the
// one that finished first: a step stopped because another failed (a DAG's
// fail-fast) ends after it. Of a retried step only its last retry counts. nil when
// no pod step failed (a Workflow that failed validation, or was stopped).
func workflowRootCause(wf *argoWorkflow) *argoNode {
	nodes := wf.Status.Nodes
	parents := map[string][]string{}
	superseded := map[string]bool{} // retries a later retry followed
	for id, n := range nodes {
		for i, c := range n.Children {
			parents[c] = append(parents[c], id)
			if n.Type == argoNodeRetry && i < len(n.Children)-1 {
				superseded[c] = true
			}
		}
	}
	var first *argoNode
	for id, n := range nodes {
		if n.Type != argoNodePod || !argoFailedPhase(n.Phase) || superseded[id] {
			continue
		}
		counts := len(parents[id]) == 0
		for _, p := range parents[id] {
			counts = counts || argoFailedPhase(nodes[p].Phase)
		}
		if counts && (first == nil || finishedBefore(&n, first)) {
			first = &n
		}
	}
	return first
}

// finishedBefore orders failed nodes by when they finished (one with no time last),
// then by id.
func finishedBefore(a, b *argoNode) bool {
	at, bt := a.FinishedAt.Time, b.FinishedAt.Time
	switch {
	case at.IsZero() != bt.IsZero():
		return bt.IsZero()
	case !at.Equal(bt):
		return at.Before(bt)
	}
	return a.ID < b.ID
}

// workflowAnnotations are the annotations autofix reads for a Workflow's template:
// the Workflow's, with the container named as the template's runs in its pod.
func workflowAnnotations(wf *argoWorkflow) map[string]string {
	a := maps.Clone(wf.Annotations)
	if a == nil {
		a = map[string]string{}
	}
	a[failure.AnnotationContainer] = argoMainContainerName
	return a
}

// describeWorkflow describes a Workflow as an event's job: the configuration is the
// main container of its template tmpl (the one whose step failed, or that a fix
// sized), whose name goes in the labels under LabelArgoTemplate. The kind is the
// label autofix.io/kind, batch by default.
func describeWorkflow(wf *argoWorkflow, tmpl, gpuLabel string) failure.Job {
	kind := failure.JobKind(wf.Labels[failure.LabelKind])
	if !kind.Valid() || kind == failure.Deployment {
		kind = failure.Batch
	}
	spec := &corev1.PodSpec{}
	if t := wf.spec().template(tmpl); t != nil {
		spec = t.podSpec()
	}
	j := describeWorkload(&wf.ObjectMeta, kind, spec, workflowAnnotations(wf), gpuLabel)
	if tmpl != "" {
		j.Labels[LabelArgoTemplate] = tmpl
	}
	return j
}

// nodePod is the pod Argo ran for node id (its node-id annotation) among pods.
func nodePod(pods []*corev1.Pod, id string) *corev1.Pod {
	for _, p := range pods {
		if p.Annotations[argoAnnotationNodeID] == id {
			return p
		}
	}
	return nil
}

// argoExit reads Argo's message of a failed pod step ("OOMKilled (exit code
// 137)", "main: Error (exit code 1)").
var argoExit = regexp.MustCompile(`^(?:[a-z0-9-]+: )?([A-Za-z]+) \(exit code (\d{1,3})\)$`)

// workflowEvent builds the FailureEvent of a failed Workflow from its root cause:
// the pod step that failed first, read as a Job's event reads its failed pod
// (podSignals) when the pod is still there, else from the node's message. It is
// priced from every pod of the Workflow still there, and measured (once for u) on
// the failed step's pod.
func (w *Watcher) workflowEvent(ctx context.Context, wf *argoWorkflow, rc *argoNode, pods []*corev1.Pod, u *runUsage) *failure.Event {
	end := cmp.Or(wf.Status.FinishedAt.Time, rc.FinishedAt.Time)
	ev := &failure.Event{ID: WorkflowEventID(string(wf.UID)), Time: end.UTC(), Source: "kubernetes",
		Job: describeWorkflow(wf, rc.TemplateName, w.o.GPUTypeLabel)}
	ev.Job.Labels[LabelArgoNode], ev.Job.Labels[LabelArgoStep] = rc.ID, rc.DisplayName
	ev.Failure = failure.Signals{Reason: "Workflow" + wf.Status.Phase, Message: cmp.Or(rc.Message, wf.Status.Message), Node: rc.HostNodeName}
	if m := argoExit.FindStringSubmatch(rc.Message); m != nil {
		ev.Failure.Reason = m[1]
		ev.Failure.ExitCode, _ = strconv.Atoi(m[2])
	}
	if !rc.StartedAt.IsZero() && !rc.FinishedAt.IsZero() {
		ev.Failure.DurationSeconds = rc.FinishedAt.Sub(rc.StartedAt.Time).Seconds()
	}
	ev.Failure.Cost, ev.Failure.Unpriced = priceWorkflow(w.o.Catalogue, wf, pods, end, w.o.GPUTypeLabel)
	pod := nodePod(pods, rc.ID)
	if pod == nil {
		return ev
	}
	ev.Job.Labels[LabelFailedPod] = pod.Name
	if t := wf.spec().template(rc.TemplateName); t != nil && t.container() != nil {
		ev.Failure.Usage = w.measure(ctx, u, workflowProbe(wf, t), []*corev1.Pod{pod}, end)
	}
	w.podSignals(ctx, pod, workflowAnnotations(wf), &ev.Failure)
	return ev
}

// workflowProbe is a Job that stands for a template's pods where the Job path's
// measuring wants one.
func workflowProbe(wf *argoWorkflow, t *argoTemplate) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: wf.Namespace, Name: wf.Name, Annotations: workflowAnnotations(wf)},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: *t.podSpec()}}}
}

// priceWorkflow prices a Workflow's run from its pods still there (priced as a
// Job's, within the Workflow's start and end), with a note when a pod step it ran
// has no pod left to price.
func priceWorkflow(cat *failure.Catalogue, wf *argoWorkflow, pods []*corev1.Pod, end time.Time, gpuLabel string) (float64, string) {
	if cat == nil {
		return 0, "no price catalogue to price it with"
	}
	var (
		dollars float64
		notes   []string
	)
	start := cmp.Or(wf.Status.StartedAt.Time, wf.CreationTimestamp.Time)
	for _, p := range pods {
		d, _, note := pricePod(cat, p, start, end, gpuLabel)
		dollars += d
		if note != "" {
			notes = append(notes, note)
		}
	}
	gone := 0
	for _, n := range wf.Status.Nodes {
		// A step an attempt kept from the failed run started before the attempt was
		// created: it ran, and was priced, there.
		if n.Type == argoNodePod && !n.StartedAt.IsZero() && !n.StartedAt.Before(&wf.CreationTimestamp) && nodePod(pods, n.ID) == nil {
			gone++
		}
	}
	if gone > 0 {
		notes = append(notes, strconv.Itoa(gone)+" of the Workflow's pod steps had no pod left to price (deleted by its pod GC, or by a person)")
	}
	return priced(dollars, notes)
}
