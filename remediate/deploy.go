package remediate

import (
	"cmp"
	"context"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"

	"github.com/autofix/autofix/failure"
)

// deploymentStuck returns the condition of a rollout past its progress deadline.
func deploymentStuck(d *appsv1.Deployment) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		c := &d.Status.Conditions[i]
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return c
		}
	}
	return nil
}

// unpricedRollout is the unpriced note of a rollout's failure: a Deployment's pods
// serve until they are replaced, and no run of theirs ends to be priced.
const unpricedRollout = "a rollout is not priced: autofix prices the runs of Jobs"

// DeploymentEventID names the failure of one rollout (a Deployment's generation).
func DeploymentEventID(d *appsv1.Deployment) string {
	return "k8s-deploy-" + string(d.UID) + "-" + strconv.FormatInt(d.Generation, 10)
}

// handleDeployment reports a rollout past its progress deadline.
func (w *Watcher) handleDeployment(ctx context.Context, d *appsv1.Deployment) error {
	if !w.selectedLabels(d.Labels) {
		return nil
	}
	c := deploymentStuck(d)
	if c == nil || w.sent(DeploymentEventID(d)) {
		return nil
	}
	ev := &failure.Event{ID: DeploymentEventID(d), Time: c.LastUpdateTime.UTC(), Source: "kubernetes", Job: w.deploymentJob(d),
		Failure: failure.Signals{Reason: c.Reason, Message: c.Message, Unpriced: unpricedRollout}}
	return w.publish(ctx, ev)
}

// crashLooping reports a Deployment's pod in CrashLoopBackOff: the rollout's failure
// with the container's own termination and log, which the Deployment's condition
// does not carry.
func (w *Watcher) crashLooping(ctx context.Context, pod *corev1.Pod, rs appslisters.ReplicaSetLister, ds appslisters.DeploymentLister) (bool, time.Duration, error) {
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != "ReplicaSet" || rs == nil {
		return false, 0, nil
	}
	looping := false
	for _, cs := range pod.Status.ContainerStatuses {
		looping = looping || (cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff")
	}
	if !looping {
		return false, 0, nil
	}
	set, err := rs.ReplicaSets(pod.Namespace).Get(owner.Name)
	if apierrors.IsNotFound(err) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	dOwner := metav1.GetControllerOf(set)
	if dOwner == nil || dOwner.Kind != "Deployment" {
		return false, 0, nil
	}
	d, err := ds.Deployments(pod.Namespace).Get(dOwner.Name)
	if apierrors.IsNotFound(err) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if !w.selectedLabels(d.Labels) {
		return false, 0, nil
	}
	id := DeploymentEventID(d) + "-crashloop" // one per rollout, whichever replica shows it
	if w.sent(id) {
		return false, 0, nil
	}
	ev := &failure.Event{ID: id, Time: time.Now().UTC(), Source: "kubernetes", Job: w.deploymentJob(d)}
	w.podSignals(ctx, pod, d.Annotations, &ev.Failure)
	if ev.Failure.Reason == "" || ev.Failure.Reason == "CrashLoopBackOff" {
		ev.Failure.Reason = "CrashLoopBackOff"
	}
	ev.Failure.Unpriced = unpricedRollout
	return false, 0, w.publish(ctx, ev)
}

// deploymentJob describes a Deployment as an event's job.
func (w *Watcher) deploymentJob(d *appsv1.Deployment) failure.Job {
	return describeDeployment(d, w.o.GPUTypeLabel)
}

// describeDeployment describes a Deployment as an event's job.
func describeDeployment(d *appsv1.Deployment, gpuLabel string) failure.Job {
	l := d.Labels
	j := failure.Job{Namespace: d.Namespace, Name: d.Name, UID: string(d.UID), Kind: failure.Deployment,
		Template: cmp.Or(l[failure.LabelTemplate], d.Name), Pipeline: l[failure.LabelPipeline], Stage: l[failure.LabelStage],
		Attempt: int(max(d.Generation, 1)), Labels: map[string]string{}}
	for k, v := range l {
		j.Labels[k] = v
	}
	spec := &d.Spec.Template.Spec
	if c, err := mainContainer(spec, d.Annotations); err == nil {
		j.Image = c.Image
		j.Resources = resourcesOf(c, gpuLabel, spec)
	}
	return j
}

func (w *Watcher) selectedLabels(l map[string]string) bool {
	if w.o.Selector == "" {
		return true
	}
	sel, err := labels.Parse(w.o.Selector)
	return err == nil && sel.Matches(labels.Set(l))
}
