package remediate

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/autofix/autofix/failure"
)

// rayJobController syncs the RayJobs the RayJob adapter's watch hands it
// (dynamicWatch). The pods of a RayJob's cluster are read from the API server when
// there is something to report (a failure, an attempt's end), not cached.
type rayJobController struct {
	*Watcher // publishing, pod signals, peaks, what was sent and reported
}

// Watch watches the RayJobs of the adapter's namespaces until ctx ends: a RayJob
// whose jobDeploymentStatus is Failed becomes one event (RayJobEventID), and a
// RayJob autofix created that completes or fails is reported to sink.
func (a *RayJobs) Watch(ctx context.Context, pub Publisher, sink OutcomeSink) error {
	w := newWatcher(a.client, pub, sink, a.o.Watch)
	if w.err != nil {
		return w.err
	}
	c := &rayJobController{Watcher: w}
	return dynamicWatch{kind: "rayjob", gvr: rayJobGVR,
		unsynced: "is the RayJob CRD installed, and may autofix list rayjobs there?",
		sync: func(ctx context.Context, u *unstructured.Unstructured) error {
			rj, err := parseRayJob(u)
			if err != nil {
				return err
			}
			return c.sync(ctx, rj)
		}}.run(ctx, a.dyn, a.o.Watch.Namespaces, w.o.Selector, w.o.Log)
}

// sync reports how a RayJob autofix created ended, and publishes the failure of a
// failed RayJob once.
func (c *rayJobController) sync(ctx context.Context, rj *rayJob) error {
	if !c.selectedLabels(rj.Labels) {
		return nil
	}
	status := rj.Status.JobDeploymentStatus
	if status != rayDeploymentFailed && status != rayDeploymentComplete {
		return nil
	}
	var pods []*corev1.Pod // read once, and only when there is something to report
	read := false
	podsOf := func() ([]*corev1.Pod, error) {
		if read {
			return pods, nil
		}
		p, err := rayPods(ctx, c.client, rj)
		if err == nil {
			pods, read = p, true
		}
		return p, err
	}
	if err := c.trackRayJob(ctx, rj, podsOf); err != nil {
		return err
	}
	id := RayJobEventID(string(rj.UID))
	if status != rayDeploymentFailed || c.sent(id) || time.Since(rj.endedAt()) > c.o.MaxAge {
		return nil
	}
	if metav1.GetControllerOfNoCopy(rj) != nil {
		return nil // a RayCronJob's, say: its owner runs it again
	}
	p, err := podsOf()
	if err != nil {
		return err
	}
	var usage runUsage
	return c.publish(ctx, c.rayJobEvent(ctx, rj, p, &usage))
}

// trackRayJob reports how a RayJob autofix created ended, once it has: succeeded
// when its deployment is Complete and its job SUCCEEDED; its configuration that of
// the group it sized (AnnotationRayGroup), its runtime from its start and end
// times, its cost its cluster's pods', its peaks those of that group's pods.
func (c *rayJobController) trackRayJob(ctx context.Context, rj *rayJob, podsOf func() ([]*corev1.Pod, error)) error {
	id := rj.Annotations[failure.AnnotationRemediation]
	if c.sink == nil || rj.Labels[failure.LabelManaged] != "true" || id == "" || c.finished.has(string(rj.UID)) {
		return nil
	}
	succeeded := rj.Status.JobDeploymentStatus == rayDeploymentComplete && rj.Status.JobStatus == rayJobSucceeded
	group := rj.Annotations[AnnotationRayGroup]
	if rj.template(group) == nil {
		group = RayHeadGroup
	}
	j := describeRayJob(rj, group, c.o.GPUTypeLabel)
	o := failure.Outcome{Template: j.Template, Attempt: j.Attempt, Succeeded: succeeded, Resources: j.Resources, Params: j.Params}
	end := rj.endedAt()
	if s := rj.Status.StartTime; s != nil && !s.IsZero() {
		o.DurationSeconds = end.Sub(s.Time).Seconds()
	}
	pods, err := podsOf()
	if err != nil {
		return err
	}
	o.Cost, o.Unpriced = priceRayJob(c.o.Catalogue, rj, pods, end, c.o.GPUTypeLabel)
	o.Usage = c.measure(ctx, nil, rayProbe(rj, group), groupPods(pods, group), end)
	claim := AttemptJob{Remediation: id, Namespace: rj.Namespace, Name: rj.Name, Token: rj.Annotations[failure.AnnotationAttemptToken]}
	if err := c.sink.Finished(ctx, claim, succeeded, o); err != nil {
		return err
	}
	c.finished.add(string(rj.UID), time.Now())
	return nil
}
