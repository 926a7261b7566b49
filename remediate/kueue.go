package remediate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
)

// LabelPriorityClass is Kueue's label naming a workload's WorkloadPriorityClass; an
// attempt keeps it with every other label of the failed workload.
const LabelPriorityClass = "kueue.x-k8s.io/priority-class"

// labelJobUID is the label Kueue puts on the Workload it makes for a Job (or a
// JobSet): the uid of that object.
const labelJobUID = "kueue.x-k8s.io/job-uid"

// workloadGVR is Kueue's Workload (kueue.x-k8s.io/v1beta2, the version it stores).
var workloadGVR = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "workloads"}

// queued reports whether a workload labelled l goes through Kueue (it names a
// LocalQueue).
func queued(l map[string]string) bool { return l[LabelQueueName] != "" }

// kueueWorkloadAnnotation is what Kueue's admission puts on a workload's pod
// template: the name of its Workload.
const kueueWorkloadAnnotation = "kueue.x-k8s.io/workload"

// Kueue reads what Kueue recorded of the workloads it admits: their Workloads. It
// only reads.
type Kueue struct {
	client dynamic.Interface
}

// NewKueue returns a Kueue that reads through client.
func NewKueue(client dynamic.Interface) *Kueue { return &Kueue{client: client} }

// kueueWorkload is the part of a Workload autofix reads.
type kueueWorkload struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		PodSets []struct {
			Name     string                 `json:"name"`
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"podSets"`
	} `json:"spec"`
	Status struct {
		Conditions []metav1.Condition `json:"conditions"`
		Admission  *struct {
			ClusterQueue      string `json:"clusterQueue"`
			PodSetAssignments []struct {
				Name    string            `json:"name"`
				Flavors map[string]string `json:"flavors"`
			} `json:"podSetAssignments"`
		} `json:"admission"`
	} `json:"status"`
}

// fromUnstructured decodes u into out through JSON.
func fromUnstructured(u *unstructured.Unstructured, out any) error {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// workload returns the Workload Kueue made for the object of uid in namespace: the
// one labelled with that uid whose controller is that object; nil when there is
// none.
func (k *Kueue) workload(ctx context.Context, namespace, uid string) (*kueueWorkload, error) {
	list, err := k.client.Resource(workloadGVR).Namespace(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{labelJobUID: uid}.String()})
	if err != nil {
		return nil, fmt.Errorf("list the kueue workloads of %s/uid %s: %w", namespace, uid, err)
	}
	for i := range list.Items {
		var wl kueueWorkload
		if err := fromUnstructured(&list.Items[i], &wl); err != nil {
			return nil, fmt.Errorf("kueue workload %s/%s: %w", namespace, list.Items[i].GetName(), err)
		}
		if owner := metav1.GetControllerOfNoCopy(&wl); owner != nil && string(owner.UID) == uid {
			return &wl, nil
		}
	}
	return nil, nil
}

// kueueJobPodSet is the name of a Job's only pod set in its Workload.
const kueueJobPodSet = "main"

// admitted returns the Workload of the object of uid when it records an admission;
// nil otherwise.
func (k *Kueue) admitted(ctx context.Context, namespace, uid string) (*kueueWorkload, error) {
	wl, err := k.workload(ctx, namespace, uid)
	if err != nil || wl == nil || wl.Status.Admission == nil {
		return nil, err
	}
	return wl, nil
}

// podSet returns the template of the Workload's pod set name, as it was before the
// admission; nil when it has none of that name.
func (wl *kueueWorkload) podSet(name string) *corev1.PodTemplateSpec {
	for i := range wl.Spec.PodSets {
		if wl.Spec.PodSets[i].Name == name {
			return &wl.Spec.PodSets[i].Template
		}
	}
	return nil
}

// restoreTemplate sets what an admission changes in tmpl (labels, annotations,
// node selector, tolerations, scheduling gates) back to before, as Kueue does when
// it suspends a workload: before is the Workload's copy. The labels the Job
// controller manages stay as they are (NewAttempt strips them).
func restoreTemplate(tmpl *corev1.PodTemplateSpec, before *corev1.PodTemplateSpec) {
	managed := map[string]string{}
	for _, l := range serverLabels {
		if v, ok := tmpl.Labels[l]; ok {
			managed[l] = v
		}
	}
	tmpl.Labels = maps.Clone(before.Labels)
	if len(managed) > 0 && tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	maps.Copy(tmpl.Labels, managed)
	tmpl.Annotations = maps.Clone(before.Annotations)
	spec, was := &tmpl.Spec, &before.Spec
	spec.NodeSelector = maps.Clone(was.NodeSelector)
	spec.Tolerations = slices.Clone(was.Tolerations)
	spec.SchedulingGates = slices.Clone(was.SchedulingGates)
}

// withoutInjected returns job, or a copy of it whose pod template is without what
// Kueue's admission added to it: restored from its Workload's copy of the template
// as it was before the admission. An admitted Job whose Workload is gone cannot be
// restored, and is ErrCannotSubmit.
func (k *Kueue) withoutInjected(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	if k == nil || !queued(job.Labels) {
		return job, nil
	}
	wl, err := k.workload(ctx, job.Namespace, string(job.UID))
	if err != nil {
		return job, err
	}
	if wl == nil {
		if _, admitted := job.Spec.Template.Annotations[kueueWorkloadAnnotation]; admitted {
			// Admitted, and its Workload is gone (a Job deleted after it finished,
			// fixed from its kept spec): what the admission added cannot be told from
			// what its owner set, and a copy carrying it would stay suspended, or run
			// on the old flavor's nodes.
			return nil, fmt.Errorf("job %s/%s was admitted by Kueue and its Workload is gone: what the admission added to its pods cannot be undone: %w",
				job.Namespace, job.Name, ErrCannotSubmit)
		}
		return job, nil
	}
	if wl.Status.Admission == nil {
		return job, nil
	}
	before := wl.podSet(kueueJobPodSet)
	if before == nil {
		return job, nil
	}
	job = job.DeepCopy()
	restoreTemplate(&job.Spec.Template, before)
	return job, nil
}

// jobSetWithoutInjected returns js, or a copy of it whose replicated jobs' pod
// templates are without what Kueue's admission added to them (restored from the Workload's pod sets):
// Kueue makes one pod set per replicated job, named after it.
func (k *Kueue) jobSetWithoutInjected(ctx context.Context, js *jobsetapi.JobSet) (*jobsetapi.JobSet, error) {
	if k == nil || !queued(js.Labels) {
		return js, nil
	}
	wl, err := k.admitted(ctx, js.Namespace, string(js.UID))
	if err != nil || wl == nil {
		return js, err
	}
	js = js.DeepCopy()
	for i := range js.Spec.ReplicatedJobs {
		rj := &js.Spec.ReplicatedJobs[i]
		if before := wl.podSet(rj.Name); before != nil {
			restoreTemplate(&rj.Template.Spec.Template, before)
		}
	}
	return js, nil
}

// quotaReserved is Kueue's condition of a Workload that holds quota in its
// ClusterQueue; False, with Kueue's reason and message, while it cannot get it.
const quotaReserved = "QuotaReserved"

// inadmissible returns, for a queued Job that Kueue keeps suspended, its Workload
// and the Workload's QuotaReserved condition when that is False (Kueue cannot
// admit it: over the queue's quota, no flavor that fits, a queue missing or
// stopped); nil, nil otherwise.
func (k *Kueue) inadmissible(ctx context.Context, job *batchv1.Job) (*kueueWorkload, *metav1.Condition, error) {
	if k == nil || !queued(job.Labels) || job.Spec.Suspend == nil || !*job.Spec.Suspend {
		return nil, nil, nil
	}
	wl, err := k.workload(ctx, job.Namespace, string(job.UID))
	if err != nil || wl == nil {
		return nil, nil, err
	}
	for i := range wl.Status.Conditions {
		if c := &wl.Status.Conditions[i]; c.Type == quotaReserved && c.Status == metav1.ConditionFalse {
			return wl, c, nil
		}
	}
	return nil, nil, nil
}
