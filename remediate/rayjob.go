package remediate

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/failure"
)

// KubeRay's RayJob (ray.io/v1), read and created as unstructured objects: a fix
// copies the failed RayJob's spec as the API server holds it, fields this
// version of autofix does not know included (docs/decisions.md, "RayJob").
var rayJobGVR = schema.GroupVersionResource{Group: "ray.io", Version: "v1", Resource: "rayjobs"}

// rayJobEventPrefix starts the id of a RayJob's failure event.
const rayJobEventPrefix = "k8s-rayjob-"

// RayJobEventID is the id of the failure event of the RayJob of uid uid: a RayJob
// is one attempt, so its uid names the failure whoever publishes it.
func RayJobEventID(uid string) string { return rayJobEventPrefix + uid }

// The labels KubeRay puts on the pods of a RayCluster: the cluster's name, the
// node type (head or worker) and the group (headgroup, or the worker group's
// name).
const (
	LabelRayCluster  = "ray.io/cluster"
	LabelRayNodeType = "ray.io/node-type"
	LabelRayGroup    = "ray.io/group"
)

// RayHeadGroup names a RayJob's head group, as Kueue names its pod set; every
// other group is a worker group, named by its groupName. In a failure event it is
// the value of LabelRayGroup (with LabelRayNodeType head).
const RayHeadGroup = "head"

// AnnotationRayGroup names, on a RayJob autofix created, the group whose failure
// it answers (RayHeadGroup or a worker group's name): the one it sized, whose
// configuration its outcome records.
const AnnotationRayGroup = "autofix.io/ray-group"

// The RayJob statuses autofix reads (status.jobDeploymentStatus, status.jobStatus).
const (
	rayDeploymentFailed   = "Failed"
	rayDeploymentComplete = "Complete"
	rayJobSucceeded       = "SUCCEEDED"
)

// rayMaxName is the longest name KubeRay accepts for a RayJob (it names the
// RayCluster after it, with a suffix).
const rayMaxName = 47

// rayJob is the part of a RayJob autofix reads.
type rayJob struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ClusterSelector map[string]string `json:"clusterSelector,omitempty"`
		RayClusterSpec  *struct {
			HeadGroupSpec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"headGroupSpec"`
			WorkerGroupSpecs []rayWorkerGroup `json:"workerGroupSpecs,omitempty"`
		} `json:"rayClusterSpec,omitempty"`
	} `json:"spec"`
	Status struct {
		JobStatus           string       `json:"jobStatus,omitempty"`
		JobDeploymentStatus string       `json:"jobDeploymentStatus,omitempty"`
		Reason              string       `json:"reason,omitempty"`
		Message             string       `json:"message,omitempty"`
		RayClusterName      string       `json:"rayClusterName,omitempty"`
		StartTime           *metav1.Time `json:"startTime,omitempty"`
		EndTime             *metav1.Time `json:"endTime,omitempty"`
	} `json:"status"`
}

// rayWorkerGroup is the part of a worker group autofix reads.
type rayWorkerGroup struct {
	GroupName  string                 `json:"groupName"`
	Replicas   *int32                 `json:"replicas,omitempty"`
	NumOfHosts int32                  `json:"numOfHosts,omitempty"`
	Template   corev1.PodTemplateSpec `json:"template"`
}

// parseRayJob decodes what autofix reads of a RayJob.
func parseRayJob(u *unstructured.Unstructured) (*rayJob, error) {
	var rj rayJob
	if err := fromUnstructured(u, &rj); err != nil {
		return nil, fmt.Errorf("rayjob %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &rj, nil
}

// template returns the pod template of group (RayHeadGroup or a worker group's
// name); nil when the RayJob has no such group, or builds no cluster of its own.
func (rj *rayJob) template(group string) *corev1.PodTemplateSpec {
	cs := rj.Spec.RayClusterSpec
	switch {
	case cs == nil:
		return nil
	case group == RayHeadGroup:
		return &cs.HeadGroupSpec.Template
	}
	for i := range cs.WorkerGroupSpecs {
		if cs.WorkerGroupSpecs[i].GroupName == group {
			return &cs.WorkerGroupSpecs[i].Template
		}
	}
	return nil
}

// endedAt is when the RayJob failed (or ended): status.endTime, else now.
func (rj *rayJob) endedAt() time.Time {
	if t := rj.Status.EndTime; t != nil && !t.IsZero() {
		return t.Time
	}
	return time.Now()
}

// rayAnnotations are the annotations autofix reads for the group whose template
// is tmpl: the RayJob's, with the container the template names (autofix.io/container
// on it) in place of the RayJob's.
func rayAnnotations(rj *rayJob, tmpl *corev1.PodTemplateSpec) map[string]string {
	a := maps.Clone(rj.Annotations)
	if tmpl == nil {
		return a
	}
	if c, ok := tmpl.Annotations[failure.AnnotationContainer]; ok {
		if a == nil {
			a = map[string]string{}
		}
		a[failure.AnnotationContainer] = c
	}
	return a
}

// describeRayJob describes a RayJob as an event's job: its configuration is the
// main container of group's template (the group that failed, or that a fix sized),
// named in the labels (LabelRayNodeType, LabelRayGroup). The kind is the label
// autofix.io/kind, training by default.
func describeRayJob(rj *rayJob, group, gpuLabel string) failure.Job {
	kind := failure.JobKind(rj.Labels[failure.LabelKind])
	if !kind.Valid() || kind == failure.Deployment {
		kind = failure.Training
	}
	var spec corev1.PodSpec
	tmpl := rj.template(group)
	if tmpl != nil {
		spec = tmpl.Spec
	}
	j := describeWorkload(&rj.ObjectMeta, kind, &spec, rayAnnotations(rj, tmpl), gpuLabel)
	if tmpl != nil {
		j.Labels[LabelRayGroup] = group
		j.Labels[LabelRayNodeType] = "worker"
		if group == RayHeadGroup {
			j.Labels[LabelRayNodeType] = "head"
		}
	}
	return j
}

// rayPodGroup is the group a pod of a RayJob's cluster belongs to, by KubeRay's
// labels: RayHeadGroup for the head, the worker group's name for a worker.
func rayPodGroup(p *corev1.Pod) string {
	if p.Labels[LabelRayNodeType] == "head" {
		return RayHeadGroup
	}
	return p.Labels[LabelRayGroup]
}

// rayPods lists the pods of the RayJob's cluster (status.rayClusterName): those
// labelled with its name whose controller is that RayCluster. None when the RayJob
// names no cluster (it never got one, or runs on another's: clusterSelector).
func rayPods(ctx context.Context, client kubernetes.Interface, rj *rayJob) ([]*corev1.Pod, error) {
	name := rj.Status.RayClusterName
	if name == "" || len(rj.Spec.ClusterSelector) > 0 {
		return nil, nil
	}
	list, err := client.CoreV1().Pods(rj.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{LabelRayCluster: name}.String()})
	if err != nil {
		return nil, fmt.Errorf("list the pods of rayjob %s/%s: %w", rj.Namespace, rj.Name, err)
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if owner := metav1.GetControllerOfNoCopy(p); owner != nil && owner.Kind == "RayCluster" && owner.Name == name {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// rayPodFailed is when a pod of a Ray cluster failed, and whether it did: the pod
// failed (its phase), or a container of it ended with an error or was OOM-killed
// (a Ray pod restarts its containers: the restarted one's last state says so).
// The earliest such end counts.
func rayPodFailed(p *corev1.Pod) (time.Time, bool) {
	var at time.Time
	note := func(t *corev1.ContainerStateTerminated) {
		if t != nil && (t.ExitCode != 0 || t.Reason == "OOMKilled") && (at.IsZero() || t.FinishedAt.Time.Before(at)) {
			at = t.FinishedAt.Time
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		note(cs.State.Terminated)
		note(cs.LastTerminationState.Terminated)
	}
	switch {
	case !at.IsZero():
		return at, true
	case p.Status.Phase == corev1.PodFailed:
		return finished(p), true
	}
	return time.Time{}, false
}

// rayRootCause is the pod of the RayJob's cluster that failed first (the root
// cause: a worker or head out of memory, before the job failed for it), and its
// group; nil and "" when none failed, or its group is not one of the RayJob's.
func rayRootCause(rj *rayJob, pods []*corev1.Pod) (*corev1.Pod, string) {
	var (
		first *corev1.Pod
		when  time.Time
	)
	for _, p := range pods {
		if rj.template(rayPodGroup(p)) == nil {
			continue
		}
		if at, ok := rayPodFailed(p); ok && (first == nil || at.Before(when)) {
			first, when = p, at
		}
	}
	if first == nil {
		return nil, ""
	}
	return first, rayPodGroup(first)
}

// rayDeadline reports whether the RayJob failed on a deadline of its own: its pods
// were stopped for it, and say nothing of why.
func rayDeadline(rj *rayJob) bool {
	return rj.Status.Reason == "DeadlineExceeded" || rj.Status.Reason == "PreRunningDeadlineExceeded"
}

// rayProbe stands for group's pods as a Job, for what reads a Job's pod template
// and annotations (measure).
func rayProbe(rj *rayJob, group string) *batchv1.Job {
	probe := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: rj.Namespace, Name: rj.Name}}
	tmpl := rj.template(group)
	if tmpl != nil {
		probe.Spec.Template = *tmpl
	}
	probe.Annotations = rayAnnotations(rj, tmpl)
	return probe
}

// groupPods are the pods of group.
func groupPods(pods []*corev1.Pod, group string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if rayPodGroup(p) == group {
			out = append(out, p)
		}
	}
	return out
}

// rayJobEvent builds the FailureEvent of a failed RayJob: from the pod of its
// cluster that failed first (group, as podSignals reads a Job's failed pod), else
// from the RayJob's status (its reason and message). Priced from its cluster's
// pods still there, measured on the group's.
func (w *Watcher) rayJobEvent(ctx context.Context, rj *rayJob, pods []*corev1.Pod, u *runUsage) *failure.Event {
	end := rj.endedAt()
	pod, group := rayRootCause(rj, pods)
	if rayDeadline(rj) {
		pod = nil
	}
	if group == "" {
		group = RayHeadGroup // the driver runs on the head
	}
	ev := &failure.Event{ID: RayJobEventID(string(rj.UID)), Time: end.UTC(), Source: "kubernetes", Job: describeRayJob(rj, group, w.o.GPUTypeLabel)}
	ev.Failure = failure.Signals{Reason: cmp.Or(rj.Status.Reason, rj.Status.JobStatus, rayDeploymentFailed), Message: rj.Status.Message}
	if s := rj.Status.StartTime; s != nil && !s.IsZero() {
		ev.Failure.DurationSeconds = end.Sub(s.Time).Seconds()
	}
	ev.Failure.Cost, ev.Failure.Unpriced = priceRayJob(w.o.Catalogue, rj, pods, end, w.o.GPUTypeLabel)
	ev.Failure.Usage = w.measure(ctx, u, rayProbe(rj, group), groupPods(pods, group), end)
	if pod == nil {
		return ev
	}
	ev.Job.Labels[LabelFailedPod] = pod.Name
	w.podSignals(ctx, pod, rayAnnotations(rj, rj.template(group)), &ev.Failure)
	return ev
}

// priceRayJob prices a RayJob's run from its cluster's pods still there, each as
// pricePod prices a Job's (within the RayJob's life); the note says when none is
// (KubeRay deletes the cluster when the job finishes with shutdownAfterJobFinishes).
func priceRayJob(cat *failure.Catalogue, rj *rayJob, pods []*corev1.Pod, end time.Time, gpuLabel string) (float64, string) {
	if cat == nil {
		return 0, "no price catalogue to price it with"
	}
	switch {
	case len(rj.Spec.ClusterSelector) > 0:
		return 0, "it runs on an existing RayCluster (spec.clusterSelector), whose pods are not its own to price"
	case len(pods) == 0:
		return 0, "none of the RayJob's cluster pods is left to price (deleted with its RayCluster, or it never got one)"
	}
	var (
		dollars float64
		notes   []string
		ran     int
	)
	for _, p := range pods {
		d, started, note := pricePod(cat, p, rj.CreationTimestamp.Time, end, gpuLabel)
		dollars += d
		if started {
			ran++
		}
		if note != "" {
			notes = append(notes, note)
		}
	}
	if ran == 0 {
		notes = append(notes, "no pod of the RayJob's cluster started: nothing ran to price")
	}
	return priced(dollars, notes)
}
