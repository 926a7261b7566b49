package remediate

import (
	"context"
	"fmt"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/autofix/autofix/failure"
)

// sync handles one key from the informers' caches: it publishes the failure the
// object shows, if it has not been published yet, and reports a finished attempt's
// outcome. after > 0 asks for another look then (a pod within its pending grace);
// an error, for a retry with backoff.
func (c *controller) sync(ctx context.Context, key queueKey) (after time.Duration, err error) {
	s := c.scope(key.namespace)
	if s == nil { // not a namespace watched: nothing to read it through
		c.gone.drop(key)
		return 0, nil
	}
	switch key.kind {
	case podKey:
		pod, err := s.pods.Pods(key.namespace).Get(key.name)
		if apierrors.IsNotFound(err) {
			return 0, nil // gone
		}
		if err != nil {
			return 0, err
		}
		if retry, after, err := c.crashLooping(ctx, pod, s.sets, s.deploys); retry || err != nil {
			return after, err
		}
		return c.syncPod(ctx, pod, s)
	case deploymentKey:
		d, err := s.deploys.Deployments(key.namespace).Get(key.name)
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		return 0, c.handleDeployment(ctx, d)
	case jobKey:
		job, err := s.jobs.Jobs(key.namespace).Get(key.name)
		if apierrors.IsNotFound(err) {
			return 0, nil // deleted: its deletion queued a key of its own, if it had anything to report
		}
		if err != nil {
			return 0, err
		}
		if err := c.syncJob(ctx, key, s, job, false); err != nil {
			return 0, err
		}
		return c.syncQueued(ctx, job)
	case deletedJobKey:
		// A failure a deleted Job had (a TTL of 0, a person) is still reported,
		// from the last state seen.
		job := c.gone.get(key)
		if job == nil {
			return 0, nil
		}
		if err := c.syncJob(ctx, key, s, job, true); err != nil {
			return 0, err
		}
		c.gone.drop(key)
		return 0, nil
	}
	return 0, fmt.Errorf("key %s: unknown kind", key)
}

// syncJob reports how an attempt autofix created ended, and publishes the failure
// of a failed Job (deleted: the Job is gone, and job is its last state).
func (c *controller) syncJob(ctx context.Context, key queueKey, s *scope, job *batchv1.Job, deleted bool) error {
	if !c.selected(job) {
		return nil
	}
	// The pods of a finished Job price and measure it, and say why it failed: read
	// once, and only when there is something to report.
	var (
		cached []*corev1.Pod
		listed bool
	)
	podsOf := func() ([]*corev1.Pod, error) {
		if listed {
			return cached, nil
		}
		var err error
		cached, err = s.pods.Pods(job.Namespace).List(labels.SelectorFromSet(labels.Set{batchv1.ControllerUidLabel: string(job.UID)}))
		listed = err == nil
		cached = controlledBy(cached, job)
		return cached, err
	}
	var usage runUsage // looked up once, for the outcome and the event both
	if err := c.trackOutcome(ctx, job, podsOf, &usage); err != nil {
		return err
	}
	cond, failed := jobFailed(job)
	if !failed || c.sent(JobEventID(job)) || time.Since(cond.LastTransitionTime.Time) > c.o.MaxAge {
		return nil
	}
	pods, err := podsOf()
	if err != nil {
		return err
	}
	if lastFailed(pods) == nil && job.Status.Failed > 0 && cond.Reason != batchv1.JobReasonDeadlineExceeded &&
		!deleted && c.queue.NumRequeues(key) < 3 {
		// The pod informer may lag the Job's: wait a little for the failed pod, which
		// says why (OOMKilled, exit code, log), before publishing without it.
		return fmt.Errorf("job %s failed, its failed pod is not in the cache yet", job.Name)
	}
	c.keepSpec(ctx, job)
	return c.publish(ctx, c.jobEvent(ctx, job, cond, pods, &usage))
}

// syncPod reports a pod of a watched Job that cannot start: an image that cannot be
// pulled, or no node it fits on, for longer than PendingGrace.
func (c *controller) syncPod(ctx context.Context, pod *corev1.Pod, s *scope) (time.Duration, error) {
	if pod.Status.Phase != corev1.PodPending {
		return 0, nil
	}
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != "Job" {
		return 0, nil
	}
	job, err := s.jobs.Jobs(pod.Namespace).Get(owner.Name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if job.UID != owner.UID {
		return 0, nil // a pod of an earlier Job of that name, or one that names it falsely
	}
	if !c.selected(job) || c.sent(StuckEventID(job)) {
		return 0, nil
	}
	var sig failure.Signals
	c.podSignals(ctx, pod, job.Annotations, &sig)
	if !stuckReason(sig.Reason) {
		return 0, nil
	}
	age := time.Since(pod.CreationTimestamp.Time)
	if age < c.o.PendingGrace {
		return c.o.PendingGrace - age, nil // look again when the grace is over
	}
	ev := &failure.Event{ID: StuckEventID(job), Time: time.Now().UTC(), Source: "kubernetes",
		Job: c.jobOf(job), Failure: sig}
	ev.Failure.DurationSeconds = age.Seconds()
	// What its pods cost so far: those that ran before (a retry within the Job);
	// the one waiting has not ended.
	pods, err := s.pods.Pods(job.Namespace).List(labels.SelectorFromSet(labels.Set{batchv1.ControllerUidLabel: string(job.UID)}))
	if err != nil {
		return 0, err
	}
	pods = controlledBy(pods, job)
	ev.Failure.Cost, ev.Failure.Unpriced = priceJob(c.o.Catalogue, job, pods, time.Time{}, c.o.GPUTypeLabel)
	c.keepSpec(ctx, job)
	return 0, c.publish(ctx, ev)
}

// stuckReason reports whether a pod's reason means it will not start by itself soon.
func stuckReason(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", corev1.PodReasonUnschedulable:
		return true
	}
	return false
}

// keepSpec keeps the failed Job's spec, for a fix submitted after it is gone. It is
// a fallback: a failure to keep it is logged, and the failure still reported.
func (w *Watcher) keepSpec(ctx context.Context, job *batchv1.Job) {
	if w.o.Specs == nil {
		return
	}
	if err := w.o.Specs.KeepSpec(ctx, job); err != nil {
		w.o.Log.Warn("watch: could not keep the failed job's spec; its fix needs the job to exist", "job", job.Namespace+"/"+job.Name, "err", err)
	}
}

func (w *Watcher) publish(ctx context.Context, ev *failure.Event) error {
	if err := w.pub.Publish(ctx, ev); err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	w.published.add(ev.ID, time.Now())
	attrs := []any{"event", ev.ID, "job", ev.Job.Namespace + "/" + ev.Job.Name, "reason", ev.Failure.Reason}
	w.o.Log.Info("failure published", append(attrs, peakAttrs(ev.Failure.Usage)...)...)
	return nil
}

func (w *Watcher) sent(id string) bool { return w.published.has(id) }

// controlledBy keeps the pods whose controller is job, as the Job controller itself
// counts them: the controller-uid label alone is copied by anyone who can create a
// pod, and such a pod must neither price the Job nor say why it failed.
func controlledBy(pods []*corev1.Pod, job *batchv1.Job) []*corev1.Pod {
	return slices.DeleteFunc(pods, func(p *corev1.Pod) bool {
		owner := metav1.GetControllerOfNoCopy(p)
		return owner == nil || owner.UID != job.UID
	})
}
