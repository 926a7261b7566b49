package remediate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// LabelPriorityClass is Kueue's label naming a workload's WorkloadPriorityClass; an
// attempt keeps it with every other label of the failed workload.
const LabelPriorityClass = "kueue.x-k8s.io/priority-class"

// labelJobUID is the label Kueue puts on the Workload it makes for a Job (or a
// JobSet): the uid of that object.
const labelJobUID = "kueue.x-k8s.io/job-uid"

// Kueue's resources read (kueue.x-k8s.io/v1beta2, the version it stores).
var (
	workloadGVR       = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "workloads"}
	resourceFlavorGVR = schema.GroupVersionResource{Group: "kueue.x-k8s.io", Version: "v1beta2", Resource: "resourceflavors"}
)

// queued reports whether a workload labelled l goes through Kueue (it names a
// LocalQueue).
func queued(l map[string]string) bool { return l[LabelQueueName] != "" }

// Kueue reads what Kueue recorded of the workloads it admits: their Workloads
// (namespaced) and ResourceFlavors (cluster-scoped). It only reads.
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

// kueueFlavor is the part of a ResourceFlavor autofix reads.
type kueueFlavor struct {
	Spec struct {
		NodeLabels  map[string]string   `json:"nodeLabels"`
		Tolerations []corev1.Toleration `json:"tolerations"`
	} `json:"spec"`
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

// flavor returns the ResourceFlavor name; nil when there is none.
func (k *Kueue) flavor(ctx context.Context, name string) (*kueueFlavor, error) {
	u, err := k.client.Resource(resourceFlavorGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kueue resource flavor %s: %w", name, err)
	}
	var f kueueFlavor
	if err := fromUnstructured(u, &f); err != nil {
		return nil, fmt.Errorf("kueue resource flavor %s: %w", name, err)
	}
	return &f, nil
}

// injected is what Kueue put into one pod set's template when it admitted it: the
// node labels and tolerations of the flavors assigned, less what the template had
// before (the Workload's copy of it).
type injected struct {
	nodeSelector map[string]string
	tolerations  []corev1.Toleration
}

// injectedInto returns what Kueue injected, at admission, into the pod template of
// the pod set podSet of the object of uid; nil when that is not knowable: no
// Workload (never queued, or gone with its object), no admission recorded, or a
// flavor gone since.
//
// Kueue (v0.19) admits a workload by merging into its pod template the nodeLabels
// and tolerations of the ResourceFlavors assigned to it (status.admission
// podSetAssignments[].flavors), and keeps the template as it was before in the
// Workload's spec.podSets[].template, which it restores when it suspends the
// workload again. A finished (failed) workload is not restored: its template still
// carries what Kueue added.
func (k *Kueue) injectedInto(ctx context.Context, namespace, uid, podSet string) (*injected, error) {
	wl, err := k.workload(ctx, namespace, uid)
	if err != nil || wl == nil || wl.Status.Admission == nil {
		return nil, err
	}
	var original *corev1.PodTemplateSpec
	for i := range wl.Spec.PodSets {
		if wl.Spec.PodSets[i].Name == podSet {
			original = &wl.Spec.PodSets[i].Template
		}
	}
	if original == nil {
		return nil, nil
	}
	out := &injected{nodeSelector: map[string]string{}}
	for _, a := range wl.Status.Admission.PodSetAssignments {
		if a.Name != podSet {
			continue
		}
		for _, name := range slices.Sorted(maps.Values(a.Flavors)) {
			f, err := k.flavor(ctx, name)
			if err != nil {
				return nil, err
			}
			if f == nil {
				return nil, nil // its labels are not knowable any more
			}
			for key, v := range f.Spec.NodeLabels {
				if had, ok := original.Spec.NodeSelector[key]; !ok || had != v {
					out.nodeSelector[key] = v
				}
			}
			for _, t := range f.Spec.Tolerations {
				if !slices.ContainsFunc(original.Spec.Tolerations, sameToleration(t)) {
					out.tolerations = append(out.tolerations, t)
				}
			}
		}
	}
	return out, nil
}

// strip removes from spec what Kueue injected: each node selector whose value is
// the one injected, and each toleration injected.
func (in *injected) strip(spec *corev1.PodSpec) {
	if in == nil {
		return
	}
	for key, v := range in.nodeSelector {
		if spec.NodeSelector[key] == v {
			delete(spec.NodeSelector, key)
		}
	}
	if len(spec.NodeSelector) == 0 {
		spec.NodeSelector = nil
	}
	spec.Tolerations = slices.DeleteFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return slices.ContainsFunc(in.tolerations, sameToleration(t))
	})
	if len(spec.Tolerations) == 0 {
		spec.Tolerations = nil
	}
}

// kueueJobPodSet is the name of a Job's only pod set in its Workload.
const kueueJobPodSet = "main"

// withoutInjected returns job, or a copy of it without what Kueue injected into its
// pod template when it admitted it, when that is knowable.
func (k *Kueue) withoutInjected(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	if k == nil || !queued(job.Labels) {
		return job, nil
	}
	in, err := k.injectedInto(ctx, job.Namespace, string(job.UID), kueueJobPodSet)
	if err != nil || in == nil {
		return job, err
	}
	job = job.DeepCopy()
	in.strip(&job.Spec.Template.Spec)
	return job, nil
}

// sameToleration matches the tolerations equal to t (key, operator, value, effect).
func sameToleration(t corev1.Toleration) func(corev1.Toleration) bool {
	return func(o corev1.Toleration) bool { return t.MatchToleration(&o) }
}
