package remediate

import (
	"context"
	"fmt"
	"maps"
	"math"
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
)

// RayJobs is the adapter of KubeRay's RayJobs (ray.io/v1): a failed RayJob is one
// event, from the pod of its cluster that failed first, and its fix a new RayJob
// with the chosen resources on that pod's group.
type RayJobs struct {
	client kubernetes.Interface
	dyn    dynamic.Interface
	o      AdapterOptions
	sub    *Submitter // the Job path's option logic: resources, GPU model, parameters
	sel    labels.Selector
}

// NewRayJobs returns the RayJob adapter: it reads and creates RayJobs through dyn,
// and reads their clusters' pods and logs through client.
func NewRayJobs(client kubernetes.Interface, dyn dynamic.Interface, o AdapterOptions) (*RayJobs, error) {
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
	return &RayJobs{client: client, dyn: dyn, o: o, sel: sel,
		sub: NewSubmitter(client, SubmitterOptions{GPUTypeLabel: o.Watch.GPUTypeLabel, Pods: o.Pods})}, nil
}

// Kind is KindRayJob.
func (a *RayJobs) Kind() string { return KindRayJob }

// Verify checks a RayJob's failure event: the RayJob exists in a watched namespace
// with the event's uid, matches the selector, nothing controls it (a RayCronJob's
// RayJobs are its own), the id is RayJobEventID's, and its jobDeploymentStatus is
// Failed. The group that failed is the cluster's to say (the pod that failed
// first); only when no pod is left to say does the event's claim count, and then
// only if the RayJob has that group; else it is the head.
func (a *RayJobs) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
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
	case ev.ID != RayJobEventID(j.UID):
		return Verified{}, unverified("id %q: the failure of RayJob %s/%s is reported as %q", ev.ID, j.Namespace, j.Name, RayJobEventID(j.UID))
	}
	u, err := a.dyn.Resource(rayJobGVR).Namespace(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && string(u.GetUID()) != j.UID {
		return Verified{}, unverified("no RayJob %s/%s with uid %s exists (a RayJob that is gone is not re-created)", j.Namespace, j.Name, j.UID)
	}
	if err != nil {
		return Verified{}, fmt.Errorf("read rayjob %s/%s: %w", j.Namespace, j.Name, err)
	}
	rj, err := parseRayJob(u)
	if err != nil {
		return Verified{}, unverified("%v", err)
	}
	if !a.sel.Matches(labels.Set(rj.Labels)) {
		return Verified{}, unverified("RayJob %s/%s does not match the selector %q", j.Namespace, j.Name, a.o.Watch.Selector)
	}
	if owner := metav1.GetControllerOf(rj); owner != nil {
		return Verified{}, unverified("RayJob %s/%s is controlled by %s %s: autofix fixes only RayJobs nothing else controls",
			j.Namespace, j.Name, owner.Kind, owner.Name)
	}
	if rj.Status.JobDeploymentStatus != rayDeploymentFailed {
		return Verified{}, unverified("RayJob %s/%s has not failed (jobDeploymentStatus %q)", j.Namespace, j.Name, rj.Status.JobDeploymentStatus)
	}
	pods, err := rayPods(ctx, a.client, rj)
	if err != nil {
		return Verified{}, err
	}
	group := RayHeadGroup
	claimed := j.Labels[LabelRayGroup]
	_, found := rayRootCause(rj, pods)
	switch {
	case found != "" && claimed != "" && claimed != found:
		return Verified{}, unverified("RayJob %s/%s: group %q failed first, not %q", j.Namespace, j.Name, found, claimed)
	case found != "":
		group = found
	case claimed != "" && rj.template(claimed) != nil:
		group = claimed
	}
	out := Verified{Job: describeRayJob(rj, group, a.o.Watch.GPUTypeLabel), RayJob: u, RayGroup: group}
	if pod := j.Labels[LabelFailedPod]; strings.HasPrefix(pod, rj.Status.RayClusterName+"-") && len(validation.IsDNS1123Subdomain(pod)) == 0 {
		out.Job.Labels[LabelFailedPod] = pod // for people; nothing acts on it
	}
	if rj.Labels[failure.LabelManaged] == "true" {
		out.Remediation, out.Token = rj.Annotations[failure.AnnotationRemediation], rj.Annotations[failure.AnnotationAttemptToken]
	}
	return out, nil
}

// Created reports whether the attempt's RayJob exists and is autofix's for this
// remediation (Submitter.Created for RayJobs).
func (a *RayJobs) Created(ctx context.Context, sub *Submission) (bool, error) {
	return a.attempts().created(ctx, sub)
}

func (a *RayJobs) attempts() dynamicAttempts {
	return dynamicAttempts{rc: a.dyn.Resource(rayJobGVR), kind: "RayJob"}
}

// CreateFrom creates the attempt's RayJob from the verified one (NewAttempt), its
// groups' pod templates without what Kueue's admission added to them (restored
// from the Workload's pod sets) when it is queued and a Kueue reader is set.
func (a *RayJobs) CreateFrom(ctx context.Context, sub *Submission, v Verified) error {
	if v.RayJob == nil || v.RayJob.GetNamespace() != sub.Namespace || v.RayJob.GetName() != sub.FailedJob || string(v.RayJob.GetUID()) != sub.FailedUID {
		return fmt.Errorf("%s/%s is not the RayJob verified for this fix: %w", sub.Namespace, sub.FailedJob, ErrCannotSubmit)
	}
	var wl *kueueWorkload
	if a.o.Kueue != nil && queued(v.RayJob.GetLabels()) {
		var err error
		if wl, err = a.o.Kueue.admitted(ctx, sub.Namespace, sub.FailedUID); err != nil {
			return classify(err)
		}
	}
	rj, err := a.newAttempt(v.RayJob, v.RayGroup, sub, wl)
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrCannotSubmit)
	}
	return a.attempts().create(ctx, sub, rj)
}

// NewAttempt builds the RayJob for sub from the failed one: its spec as written
// (entrypoint, runtime environment, submitter, shutdown and deletion policies,
// every group's replicas and bounds, fields autofix does not know) with the
// chosen resources on the main container of group (the group that failed: head
// and worker groups are sized separately), the option's parameters on every
// group's main container where the RayJob binds them, nodes to avoid kept off by
// every group, and the chain's labels and annotations; status and what servers
// set go. Every label of the failed RayJob is kept (Kueue's queue and priority
// class among them); a RayJob Kueue admits (LabelQueueName) is created suspended.
// A RayJob that runs on an existing RayCluster (spec.clusterSelector) is refused:
// the cluster is not autofix's to resize. Every pod template is held to the pod
// policy.
func (a *RayJobs) NewAttempt(failed *unstructured.Unstructured, group string, sub *Submission) (*unstructured.Unstructured, error) {
	return a.newAttempt(failed, group, sub, nil)
}

// newAttempt is NewAttempt, with the groups' templates restored from Kueue's
// Workload wl (nil: as they are).
func (a *RayJobs) newAttempt(failed *unstructured.Unstructured, group string, sub *Submission, wl *kueueWorkload) (*unstructured.Unstructured, error) {
	who := fmt.Sprintf("rayjob %s/%s", failed.GetNamespace(), failed.GetName())
	rj, err := parseRayJob(failed)
	switch {
	case err != nil:
		return nil, err
	case len(rj.Spec.ClusterSelector) > 0:
		return nil, fmt.Errorf("%s runs on an existing RayCluster (spec.clusterSelector %v), which autofix did not create and does not resize: fix the cluster, or give the RayJob a rayClusterSpec",
			who, rj.Spec.ClusterSelector)
	case rj.Spec.RayClusterSpec == nil:
		return nil, fmt.Errorf("%s has no spec.rayClusterSpec to build a cluster from", who)
	case rj.template(group) == nil:
		return nil, fmt.Errorf("%s has no group %q", who, group)
	case len(sub.Name) > rayMaxName:
		return nil, fmt.Errorf("%s: the attempt's name %q is longer than the %d characters KubeRay accepts for a RayJob", who, sub.Name, rayMaxName)
	}
	src, ok := failed.Object["spec"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s has no spec", who)
	}
	spec := runtimeDeepCopy(src)
	b, err := bindings(failed.GetAnnotations())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", who, err)
	}
	cluster, _ := spec["rayClusterSpec"].(map[string]any)
	edit := func(name string, tmplMap map[string]any, field string) error {
		if tmplMap == nil {
			return fmt.Errorf("%s has no %s", who, field)
		}
		var tmpl corev1.PodTemplateSpec
		if err := fromMap(tmplMap, &tmpl); err != nil {
			return fmt.Errorf("%s %s: %w", who, field, err)
		}
		if wl != nil {
			if before := wl.podSet(name); before != nil {
				restoreTemplate(&tmpl, before)
			}
		}
		if err := a.editTemplate(rj, &tmpl, field, name == group, b, sub); err != nil {
			return fmt.Errorf("%s group %s: %w", who, name, err)
		}
		out, err := toMap(&tmpl)
		if err != nil {
			return fmt.Errorf("%s %s: %w", who, field, err)
		}
		clear(tmplMap)
		maps.Copy(tmplMap, out)
		return nil
	}
	head, _ := cluster["headGroupSpec"].(map[string]any)
	tmpl, _ := head["template"].(map[string]any)
	if err := edit(RayHeadGroup, tmpl, "spec.rayClusterSpec.headGroupSpec.template"); err != nil {
		return nil, err
	}
	workers, _ := cluster["workerGroupSpecs"].([]any)
	for i, w := range workers {
		wg, _ := w.(map[string]any)
		name, _ := wg["groupName"].(string)
		tmpl, _ := wg["template"].(map[string]any)
		delete(wg, "scaleStrategy") // workers the autoscaler marked for deletion in the old cluster
		if err := edit(name, tmpl, fmt.Sprintf("spec.rayClusterSpec.workerGroupSpecs[%d].template", i)); err != nil {
			return nil, err
		}
	}
	if err := a.checkOtherPods(spec, cluster, who); err != nil {
		return nil, err
	}
	if opt := sub.Option; opt.DeadlineSeconds > 0 {
		d, err := deadline(opt, nil)
		if err != nil {
			return nil, err
		}
		if *d > math.MaxInt32 {
			return nil, fmt.Errorf("deadline of %d seconds: over the %d a RayJob can hold", *d, math.MaxInt32)
		}
		spec["activeDeadlineSeconds"] = *d
	}
	if queued(failed.GetLabels()) {
		spec["suspend"] = true // for Kueue to admit, within the queue's quota
	}
	annotations := attemptAnnotations(failed.GetAnnotations(), sub)
	annotations[AnnotationRayGroup] = group
	out := &unstructured.Unstructured{Object: map[string]any{"apiVersion": failed.GetAPIVersion(), "kind": failed.GetKind(), "spec": spec}}
	if out.GetAPIVersion() == "" {
		out.SetAPIVersion(rayJobGVR.GroupVersion().String())
	}
	if out.GetKind() == "" {
		out.SetKind(KindRayJob)
	}
	out.SetNamespace(sub.Namespace)
	out.SetName(sub.Name)
	out.SetLabels(withChain(maps.Clone(failed.GetLabels()), sub))
	out.SetAnnotations(annotations)
	return out, nil
}

// editTemplate applies the option to one group's pod template: the chain's labels,
// the pod policy, nodes to avoid; for the group that failed (sized) the option's
// resources and parameters, for the others its parameters where the RayJob binds
// them (the program reads them in every Ray process).
func (a *RayJobs) editTemplate(rj *rayJob, tmpl *corev1.PodTemplateSpec, field string, sized bool, b map[string]Binding, sub *Submission) error {
	tmpl.Labels = withChain(tmpl.Labels, sub)
	if err := podsafety.CheckTemplate(tmpl, field, a.o.Pods); err != nil {
		return err
	}
	opt := sub.Option
	avoidNodes(&tmpl.Spec, opt.AvoidNodes)
	c, err := mainContainer(&tmpl.Spec, rayAnnotations(rj, tmpl))
	if err != nil {
		return err
	}
	if sized {
		return a.sub.applyOption(&tmpl.Spec, c, b, opt)
	}
	for name, value := range opt.Params {
		switch bd := b[name]; {
		case bd.Env != "":
			c.Env = setEnv(c.Env, bd.Env, value)
		case bd.Arg != "":
			c.Args = setArg(c.Args, bd.Arg, value)
		}
	}
	return nil
}

// runtimeDeepCopy deep-copies a JSON object (what unstructured objects hold).
func runtimeDeepCopy(m map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: m}).DeepCopy().Object
}

// fromMap decodes a JSON object into out.
func fromMap(m map[string]any, out any) error {
	return fromUnstructured(&unstructured.Unstructured{Object: m}, out)
}

// toMap encodes v as a JSON object, without the null creation time a template's
// metadata is written with.
func toMap(v any) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		return nil, err
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return m, nil
}

// checkOtherPods holds to the pod policy what else of the attempt's spec KubeRay
// makes pods or containers from, copied as written: the submitter's pod template
// (spec.submitterPodTemplate) and the autoscaler sidecar the head gets
// (spec.rayClusterSpec.autoscalerOptions, checked as a container of the head).
func (a *RayJobs) checkOtherPods(spec, cluster map[string]any, who string) error {
	if m, ok := spec["submitterPodTemplate"].(map[string]any); ok {
		var tmpl corev1.PodTemplateSpec
		if err := fromMap(m, &tmpl); err != nil {
			return fmt.Errorf("%s spec.submitterPodTemplate: %w", who, err)
		}
		if err := podsafety.CheckTemplate(&tmpl, "spec.submitterPodTemplate", a.o.Pods); err != nil {
			return fmt.Errorf("%s: %w", who, err)
		}
	} else if spec["submitterPodTemplate"] != nil {
		return fmt.Errorf("%s spec.submitterPodTemplate: not an object", who)
	}
	if m, ok := cluster["autoscalerOptions"].(map[string]any); ok {
		var c corev1.Container
		if err := fromMap(m, &c); err != nil {
			return fmt.Errorf("%s spec.rayClusterSpec.autoscalerOptions: %w", who, err)
		}
		c.Name = "autoscaler"
		ps := corev1.PodSpec{Containers: []corev1.Container{{Name: c.Name, SecurityContext: c.SecurityContext, Env: c.Env, EnvFrom: c.EnvFrom, VolumeMounts: c.VolumeMounts}}}
		if err := podsafety.Check(&ps, "spec.rayClusterSpec.autoscalerOptions", a.o.Pods); err != nil {
			return fmt.Errorf("%s: %w", who, err)
		}
	} else if cluster["autoscalerOptions"] != nil {
		return fmt.Errorf("%s spec.rayClusterSpec.autoscalerOptions: not an object", who)
	}
	return nil
}
