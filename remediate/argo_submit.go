package remediate

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/podsafety"
	"github.com/autofix/autofix/policy"
)

// Workflows is the adapter of Argo Workflows (argoproj.io/v1alpha1): a failed
// Workflow is one event, its first failed pod step the root cause, and its fix a
// new Workflow that re-runs the failed steps with the chosen option on the failed
// step's template, the steps that succeeded kept (docs/kubernetes.md, "Argo
// Workflows").
type Workflows struct {
	client kubernetes.Interface
	dyn    dynamic.Interface
	o      AdapterOptions
	sub    *Submitter // the Job path's option logic: resources, GPU model, parameters
	sel    labels.Selector
}

// NewWorkflows returns the Argo Workflows adapter: it reads Workflows and creates
// them through dyn, and reads their pods and logs through client.
func NewWorkflows(client kubernetes.Interface, dyn dynamic.Interface, o AdapterOptions) (*Workflows, error) {
	if o.Watch.GPUTypeLabel == "" {
		o.Watch.GPUTypeLabel = "nvidia.com/gpu.product"
	}
	sel := labels.Everything()
	if o.Watch.Selector != "" {
		var err error
		if sel, err = labels.Parse(o.Watch.Selector); err != nil {
			return nil, fmt.Errorf("selector %q: %w", o.Watch.Selector, err)
		}
	}
	return &Workflows{client: client, dyn: dyn, o: o, sel: sel,
		sub: NewSubmitter(client, SubmitterOptions{GPUTypeLabel: o.Watch.GPUTypeLabel, Pods: o.Pods})}, nil
}

// Kind is KindWorkflow.
func (a *Workflows) Kind() string { return KindWorkflow }

// decodeWorkflow decodes the part of a Workflow autofix reads.
func decodeWorkflow(u *unstructured.Unstructured) (*argoWorkflow, error) {
	var wf argoWorkflow
	if err := fromUnstructured(u, &wf); err != nil {
		return nil, fmt.Errorf("workflow %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &wf, nil
}

// Verify checks a Workflow's failure event: the Workflow exists in a watched
// namespace with the event's uid, matches the selector, nothing but a CronWorkflow
// controls it, the id is WorkflowEventID's, its phase is Failed or Error, and a pod
// step of it failed. The root cause is the cluster's (workflowRootCause); an event
// that names another node is refused.
func (a *Workflows) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
	j := &ev.Job
	switch {
	case j.UID == "":
		return Verified{}, unverified("job.uid: required to act on a cluster")
	case len(validation.IsDNS1123Label(j.Namespace)) > 0:
		return Verified{}, unverified("job.namespace: %q is not a namespace name", j.Namespace)
	case len(validation.IsDNS1123Subdomain(j.Name)) > 0:
		return Verified{}, unverified("job.name: %q is not the name of a Kubernetes object", j.Name)
	case !watches(a.o.Watch.Namespaces, j.Namespace):
		return Verified{}, unverified("namespace %q is not one autofix watches", j.Namespace)
	case ev.ID != WorkflowEventID(j.UID):
		return Verified{}, unverified("id %q: the failure of Workflow %s/%s is reported as %q", ev.ID, j.Namespace, j.Name, WorkflowEventID(j.UID))
	}
	u, err := a.dyn.Resource(WorkflowGVR).Namespace(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && string(u.GetUID()) != j.UID {
		return Verified{}, unverified("no Workflow %s/%s with uid %s exists (a Workflow that is gone is not re-created)", j.Namespace, j.Name, j.UID)
	}
	if err != nil {
		return Verified{}, fmt.Errorf("read workflow %s/%s: %w", j.Namespace, j.Name, err)
	}
	wf, err := decodeWorkflow(u)
	if err != nil {
		return Verified{}, unverified("%v", err)
	}
	if !a.sel.Matches(labels.Set(wf.Labels)) {
		return Verified{}, unverified("Workflow %s/%s does not match the selector %q", j.Namespace, j.Name, a.o.Watch.Selector)
	}
	if owner := metav1.GetControllerOf(wf); owner != nil && owner.Kind != "CronWorkflow" {
		return Verified{}, unverified("Workflow %s/%s is controlled by %s %s: autofix fixes only Workflows nothing but a CronWorkflow controls",
			j.Namespace, j.Name, owner.Kind, owner.Name)
	}
	if !argoFailedPhase(wf.Status.Phase) {
		return Verified{}, unverified("Workflow %s/%s has not failed (phase %q)", j.Namespace, j.Name, wf.Status.Phase)
	}
	rc := workflowRootCause(wf)
	if rc == nil {
		return Verified{}, unverified("Workflow %s/%s: no pod step of it failed (%s)", j.Namespace, j.Name, wf.Status.Message)
	}
	if claimed := j.Labels[LabelArgoNode]; claimed != "" && claimed != rc.ID {
		return Verified{}, unverified("Workflow %s/%s: its step %s (node %s) failed first, not node %q", j.Namespace, j.Name, rc.DisplayName, rc.ID, claimed)
	}
	out := Verified{Job: describeWorkflow(wf, rc.TemplateName, a.o.Watch.GPUTypeLabel), Workflow: u, WorkflowNode: rc.ID}
	out.Job.Labels[LabelArgoNode], out.Job.Labels[LabelArgoStep] = rc.ID, rc.DisplayName
	if pod := j.Labels[LabelFailedPod]; strings.HasPrefix(pod, wf.Name+"-") && len(validation.IsDNS1123Subdomain(pod)) == 0 {
		out.Job.Labels[LabelFailedPod] = pod // for people; nothing acts on it
	}
	if wf.Labels[failure.LabelManaged] == "true" {
		out.Remediation, out.Token = wf.Annotations[failure.AnnotationRemediation], wf.Annotations[failure.AnnotationAttemptToken]
	}
	return out, nil
}

// Created reports whether the attempt's Workflow exists and is autofix's for this
// remediation (Submitter.Created for Workflows).
func (a *Workflows) Created(ctx context.Context, sub *Submission) (bool, error) {
	return a.attempts().created(ctx, sub)
}

func (a *Workflows) attempts() dynamicAttempts {
	return dynamicAttempts{rc: a.dyn.Resource(WorkflowGVR), kind: "Workflow"}
}

// CreateFrom creates the attempt's Workflow from the verified one (NewAttempt).
func (a *Workflows) CreateFrom(ctx context.Context, sub *Submission, v Verified) error {
	if v.Workflow == nil || v.Workflow.GetNamespace() != sub.Namespace || v.Workflow.GetName() != sub.FailedJob || string(v.Workflow.GetUID()) != sub.FailedUID {
		return fmt.Errorf("%s/%s is not the Workflow verified for this fix: %w", sub.Namespace, sub.FailedJob, ErrCannotSubmit)
	}
	wf, err := a.NewAttempt(v.Workflow, v.WorkflowNode, sub)
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrCannotSubmit)
	}
	return a.attempts().create(ctx, sub, wf)
}

// NewAttempt builds the Workflow for sub from the failed one, as Argo's own
// `argo resubmit --memoized` formulates a new Workflow (under autofix's name, not a
// generated one): its spec — the one its controller stored, for a Workflow that
// refers to a WorkflowTemplate — with the chosen option applied to the template of
// the pod step that failed first (node), and a status that keeps every pod step that
// succeeded as it ran (workflowAttemptStatus), so that Argo's controller re-runs
// only what did not succeed. Every label of the failed Workflow is kept
// but Argo's own; the chain's labels and annotations are added. Every template's
// pod is held to the pod policy; a pod spec patch, which cannot be, is refused.
func (a *Workflows) NewAttempt(failed *unstructured.Unstructured, node string, sub *Submission) (*unstructured.Unstructured, error) {
	who := fmt.Sprintf("workflow %s/%s", failed.GetNamespace(), failed.GetName())
	wf, err := decodeWorkflow(failed)
	if err != nil {
		return nil, err
	}
	rc, ok := wf.Status.Nodes[node]
	switch {
	case !ok || rc.Type != argoNodePod || !argoFailedPhase(rc.Phase):
		return nil, fmt.Errorf("%s has no failed pod step %q", who, node)
	case rc.TemplateRef != nil:
		return nil, fmt.Errorf("%s: its step %s runs template %s of WorkflowTemplate %s: autofix sizes only templates the Workflow holds",
			who, rc.DisplayName, rc.TemplateRef.Template, rc.TemplateRef.Name)
	}
	spec, err := attemptSpec(failed, wf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", who, err)
	}
	var typed argoSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &typed); err != nil {
		return nil, fmt.Errorf("%s: spec: %w", who, err)
	}
	if err := checkWorkflowPods(&typed, "spec", a.o.Pods); err != nil {
		return nil, fmt.Errorf("%s: %w", who, err)
	}
	templates, _, _ := unstructured.NestedSlice(spec, "templates")
	idx := -1
	for i := range typed.Templates {
		if typed.Templates[i].Name == rc.TemplateName {
			idx = i
		}
	}
	if idx < 0 || typed.Templates[idx].container() == nil {
		return nil, fmt.Errorf("%s: its step %s runs template %q, which is not a container or script template of its spec", who, rc.DisplayName, rc.TemplateName)
	}
	tmpl, _ := templates[idx].(map[string]any)
	if err := a.applyToTemplate(tmpl, &typed.Templates[idx], failed.GetAnnotations(), sub.Option); err != nil {
		return nil, fmt.Errorf("%s template %s: %w", who, rc.TemplateName, err)
	}
	if err := unstructured.SetNestedSlice(spec, templates, "templates"); err != nil {
		return nil, err
	}
	l := maps.Clone(failed.GetLabels())
	for _, k := range argoServerLabels {
		delete(l, k)
	}
	l = withChain(l, sub)
	if len(validation.IsValidLabelValue(failed.GetName())) == 0 { // a name may be longer than a label value
		l[argoLabelResubmitted] = failed.GetName()
	}
	annotations := attemptAnnotations(failed.GetAnnotations(), sub)
	annotations[AnnotationArgoTemplate] = rc.TemplateName
	out := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": WorkflowGVR.GroupVersion().String(), "kind": "Workflow",
		"spec": spec, "status": workflowAttemptStatus(failed, wf, sub.Name),
	}}
	out.SetName(sub.Name)
	out.SetNamespace(sub.Namespace)
	out.SetLabels(l)
	out.SetAnnotations(annotations)
	return out, nil
}

// attemptSpec is the spec an attempt starts from: the failed Workflow's, or, for
// one that refers to a WorkflowTemplate, the spec its controller stored (the
// template's merged with the Workflow's), so that the fix changes the template's
// step in the attempt alone, never the WorkflowTemplate others run. A Workflow
// stopped or terminated by hand runs again without that.
func attemptSpec(failed *unstructured.Unstructured, wf *argoWorkflow) (map[string]any, error) {
	spec, _, _ := unstructured.NestedMap(failed.Object, "spec")
	if wf.Spec.WorkflowTemplateRef != nil {
		stored, ok, _ := unstructured.NestedMap(failed.Object, "status", "storedWorkflowTemplateSpec")
		if !ok {
			return nil, fmt.Errorf("it refers to WorkflowTemplate %s, and its controller stored no spec of it to build a fix from",
				wf.Spec.WorkflowTemplateRef.Name)
		}
		spec = stored
		delete(spec, "workflowTemplateRef")
	}
	if spec == nil {
		return nil, fmt.Errorf("it has no spec")
	}
	delete(spec, "shutdown")
	if d, ok, _ := unstructured.NestedInt64(spec, "activeDeadlineSeconds"); ok && d == 0 {
		delete(spec, "activeDeadlineSeconds") // terminated by hand
	}
	return spec, nil
}

// checkWorkflowPods holds the pod of every template of spec (at field, for errors)
// to the pod policy — a container or script template's, a container set's, an
// inline template's of a step or DAG task, the template defaults (with the
// Workflow's volumes, host network, security context and pod metadata) — and
// refuses what autofix cannot see into: a pod spec patch, a step that runs a
// WorkflowTemplate's template (templateRef), a resource template (its manifest
// may be any object, a pod among them).
func checkWorkflowPods(spec *argoSpec, at string, p policy.Pods) error {
	if spec.PodSpecPatch != "" {
		return fmt.Errorf("%s.podSpecPatch: a pod spec patch cannot be held to the pod policy; autofix does not create Workflows that have one", at)
	}
	if err := checkHooks(spec.Hooks, at); err != nil {
		return err
	}
	if spec.TemplateDefaults != nil {
		if err := checkArgoTemplate(spec, spec.TemplateDefaults, at+".templateDefaults", p); err != nil {
			return err
		}
	}
	for i := range spec.Templates {
		if err := checkArgoTemplate(spec, &spec.Templates[i], fmt.Sprintf("%s.templates[%d]", at, i), p); err != nil {
			return err
		}
	}
	return nil
}

// checkArgoTemplate holds template t of spec (at field) to the pod policy
// (checkWorkflowPods), with the inline templates of its steps and DAG tasks.
func checkArgoTemplate(spec *argoSpec, t *argoTemplate, field string, p policy.Pods) error {
	refuse := func(f, what string) error {
		return fmt.Errorf("%s.%s: %s cannot be held to the pod policy; autofix does not create Workflows that have one", field, f, what)
	}
	switch {
	case t.PodSpecPatch != "":
		return refuse("podSpecPatch", "a pod spec patch")
	case t.TemplateRef != nil:
		return refuse("templateRef", "a template of a WorkflowTemplate")
	case t.Resource != nil:
		return refuse("resource", "a resource template's manifest")
	}
	var containers []corev1.Container
	if c := t.container(); c != nil {
		containers = append(containers, *c)
	}
	if t.ContainerSet != nil {
		containers = append(containers, t.ContainerSet.Containers...)
	}
	annotations := maps.Clone(spec.PodMetadata.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	maps.Copy(annotations, t.Metadata.Annotations)
	pod := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: annotations}, Spec: corev1.PodSpec{
		Containers: append(containers, t.Sidecars...), InitContainers: t.InitContainers,
		Volumes: append(append([]corev1.Volume(nil), spec.Volumes...), t.Volumes...), HostNetwork: spec.HostNetwork,
		SecurityContext: spec.SecurityContext}}
	if t.SecurityContext != nil {
		pod.Spec.SecurityContext = t.SecurityContext
	}
	if err := podsafety.CheckTemplate(&pod, field, p); err != nil {
		return err
	}
	type at struct {
		field string
		step  *argoStep
	}
	var steps []at
	for g := range t.Steps {
		for j := range t.Steps[g] {
			steps = append(steps, at{fmt.Sprintf("%s.steps[%d][%d]", field, g, j), &t.Steps[g][j]})
		}
	}
	if t.DAG != nil {
		for j := range t.DAG.Tasks {
			steps = append(steps, at{fmt.Sprintf("%s.dag.tasks[%d]", field, j), &t.DAG.Tasks[j]})
		}
	}
	for _, s := range steps {
		if s.step.TemplateRef != nil {
			return fmt.Errorf("%s.templateRef: a template of a WorkflowTemplate cannot be held to the pod policy; autofix does not create Workflows that run one", s.field)
		}
		if err := checkHooks(s.step.Hooks, s.field); err != nil {
			return err
		}
		if s.step.Inline != nil {
			if err := checkArgoTemplate(spec, s.step.Inline, s.field+".inline", p); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkHooks refuses a lifecycle hook (of hooks, at field) that runs a template of
// a WorkflowTemplate, which the pod policy cannot see.
func checkHooks(hooks map[string]argoHook, field string) error {
	for _, name := range slices.Sorted(maps.Keys(hooks)) {
		if hooks[name].TemplateRef != nil {
			return fmt.Errorf("%s.hooks[%q].templateRef: a template of a WorkflowTemplate cannot be held to the pod policy; autofix does not create Workflows that run one",
				field, name)
		}
	}
	return nil
}

// applyToTemplate applies opt to a container or script template (tmpl as written,
// t as read): resources, environment and arguments on its container, a GPU model
// as its node selector, nodes to avoid as its node affinity, a deadline as its
// activeDeadlineSeconds. The template's container resources are what the fix sets,
// not a pod spec patch: they are what the Workflow's author wrote and reads, Argo's
// schema checks them, and they size the main container alone (docs/decisions.md).
func (a *Workflows) applyToTemplate(tmpl map[string]any, t *argoTemplate, annotations map[string]string, opt failure.Option) error {
	key := "container"
	if t.Container == nil {
		key = "script"
	}
	cm, _ := tmpl[key].(map[string]any)
	spec := t.podSpec()
	c := &spec.Containers[0]
	b, err := bindings(annotations)
	if err != nil {
		return err
	}
	if err := a.sub.applyOption(spec, c, b, opt); err != nil {
		return err
	}
	avoidNodes(spec, opt.AvoidNodes)
	set := func(m map[string]any, k string, v any, empty bool) error {
		if empty {
			delete(m, k)
			return nil
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&struct {
			V any `json:"v"`
		}{v})
		if err != nil {
			return err
		}
		m[k] = u["v"]
		return nil
	}
	for _, f := range []struct {
		m     map[string]any
		key   string
		v     any
		empty bool
	}{
		{cm, "resources", c.Resources, len(c.Resources.Limits) == 0 && len(c.Resources.Requests) == 0},
		{cm, "env", c.Env, len(c.Env) == 0},
		{cm, "args", c.Args, len(c.Args) == 0},
		{tmpl, "nodeSelector", spec.NodeSelector, len(spec.NodeSelector) == 0},
		{tmpl, "affinity", spec.Affinity, spec.Affinity == nil},
	} {
		if err := set(f.m, f.key, f.v, f.empty); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	d, err := deadline(opt, nil)
	if err != nil {
		return err
	}
	if d != nil {
		tmpl["activeDeadlineSeconds"] = *d
	}
	return nil
}

// argoNodeID is the id Argo's controller gives the node name in the Workflow wf
// (the Workflow's own node has its name; every other, the Workflow's name and a
// 32-bit FNV-1a hash of the node's name).
func argoNodeID(wf, name string) string {
	if name == wf {
		return wf
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return fmt.Sprintf("%s-%d", wf, h.Sum32())
}

// CheckWorkflowSpec holds an Argo Workflow spec (as written; field names it in
// errors) to the pod policy as a fix of a Workflow is held (checkWorkflowPods): the
// pipeline driver checks a Workflow stage with it before creating anything.
func CheckWorkflowSpec(spec map[string]any, field string, p policy.Pods) error {
	var typed argoSpec
	if err := fromUnstructured(&unstructured.Unstructured{Object: spec}, &typed); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return checkWorkflowPods(&typed, field, p)
}
