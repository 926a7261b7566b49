package remediate

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/autofix/autofix/failure"
)

// syncQueued reports a queued Job that Kueue has not admitted for
// InadmissibleAfter: its Workload's QuotaReserved condition False for that long,
// with Kueue's reason and message, as the Job's stuck event (StuckEventID) — a
// matter of the queue's capacity, not of the Job's resources. after > 0 asks for
// another look then: nothing changes on a suspended Job while it waits.
func (c *controller) syncQueued(ctx context.Context, job *batchv1.Job) (after time.Duration, err error) {
	if c.o.Kueue == nil || !queued(job.Labels) || job.Spec.Suspend == nil || !*job.Spec.Suspend ||
		!c.selected(job) || c.sent(StuckEventID(job)) {
		return 0, nil
	}
	if _, failed := jobFailed(job); failed {
		return 0, nil
	}
	if _, complete := jobCondition(job, batchv1.JobComplete); complete {
		return 0, nil
	}
	wl, cond, err := c.o.Kueue.inadmissible(ctx, job)
	if err != nil {
		return 0, err
	}
	if cond == nil {
		// No Workload yet, or one still being looked at: Kueue unsuspends the Job
		// when it admits it (an update, handled then); until then, look again.
		return c.o.InadmissibleAfter, nil
	}
	if waited := time.Since(cond.LastTransitionTime.Time); waited < c.o.InadmissibleAfter {
		return c.o.InadmissibleAfter - waited, nil
	}
	ev := &failure.Event{ID: StuckEventID(job), Time: time.Now().UTC(), Source: "kubernetes", Job: c.jobOf(job)}
	ev.Failure.Reason = cond.Reason
	ev.Failure.Message = fmt.Sprintf("kueue: workload %s in queue %s not admitted (%s=False): %s",
		wl.Name, job.Labels[LabelQueueName], quotaReserved, cond.Message)
	ev.Failure.DurationSeconds = time.Since(job.CreationTimestamp.Time).Seconds()
	c.keepSpec(ctx, job)
	return 0, c.publish(ctx, ev)
}
