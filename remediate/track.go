package remediate

import (
	"context"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/autofix/autofix/failure"
)

// trackOutcome reports how a Job autofix created ended, once it has, priced and
// measured (once for u) from its pods (those the cache holds, as podsOf lists them).
func (w *Watcher) trackOutcome(ctx context.Context, job *batchv1.Job, podsOf func() ([]*corev1.Pod, error), u *runUsage) error {
	id := job.Annotations[failure.AnnotationRemediation]
	if w.sink == nil || job.Labels[failure.LabelManaged] != "true" || id == "" {
		return nil
	}
	cond, done := jobCondition(job, batchv1.JobComplete)
	succeeded := done
	if !done {
		if cond, done = jobFailed(job); !done {
			return nil
		}
	}
	if w.finished.has(string(job.UID)) {
		return nil
	}
	o := failure.Outcome{Template: w.jobOf(job).Template, Attempt: attemptOf(job), Succeeded: succeeded}
	j := w.jobOf(job)
	o.Resources, o.Params = j.Resources, j.Params
	if job.Status.StartTime != nil {
		o.DurationSeconds = cond.LastTransitionTime.Sub(job.Status.StartTime.Time).Seconds()
	}
	pods, err := podsOf()
	if err != nil {
		return err
	}
	o.Cost, o.Unpriced = priceJob(w.o.Catalogue, job, pods, cond.LastTransitionTime.Time, w.o.GPUTypeLabel)
	o.Usage = w.measure(ctx, u, job, pods, cond.LastTransitionTime.Time)
	claim := AttemptJob{Remediation: id, Namespace: job.Namespace, Name: job.Name, Token: job.Annotations[failure.AnnotationAttemptToken]}
	if err := w.sink.Finished(ctx, claim, succeeded, o); err != nil {
		return err
	}
	w.finished.add(string(job.UID), time.Now())
	return nil
}
