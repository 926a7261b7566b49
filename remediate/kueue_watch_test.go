package remediate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

// kueueMessage is what Kueue v0.19 writes on a Workload over its ClusterQueue's
// maximum capacity.
const kueueMessage = "couldn't assign flavors to pod set main: insufficient quota for cpu in flavor reserved, " +
	"previously considered podsets requests (0) + current podset request (8) > maximum capacity (4)"

// waitingJob is queuedJob still waiting: suspended by Kueue, not started.
func waitingJob() *batchv1.Job {
	job := queuedJob()
	job.ResourceVersion = "1"
	suspend := true
	job.Spec.Suspend = &suspend
	job.Status = batchv1.JobStatus{}
	job.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	return job
}

// pendingWorkload is the Workload of queuedJob, not admitted since ago:
// QuotaReserved False with Kueue's reason and message.
func pendingWorkload(ago time.Duration, status metav1.ConditionStatus) runtime.Object {
	u := kueueObjects("0b1c", false)[0].(*unstructured.Unstructured)
	u.Object["status"] = map[string]any{"conditions": []any{map[string]any{"type": "QuotaReserved", "status": string(status),
		"reason": "Pending", "message": kueueMessage,
		"lastTransitionTime": time.Now().Add(-ago).UTC().Format(time.RFC3339)}}}
	return u
}

func TestSyncQueuedJobKueueDoesNotAdmit(t *testing.T) {
	running := waitingJob()
	running.Spec.Suspend = new(false)
	for _, tc := range []struct {
		name      string
		job       *batchv1.Job
		workload  []runtime.Object
		wantAfter bool
		want      []string
	}{
		{"inadmissible past the time", waitingJob(), []runtime.Object{pendingWorkload(20*time.Minute, metav1.ConditionFalse)}, false,
			[]string{"k8s-job-0b1c-stuck"}},
		{"inadmissible within the time", waitingJob(), []runtime.Object{pendingWorkload(time.Minute, metav1.ConditionFalse)}, true, nil},
		{"no workload yet", waitingJob(), nil, true, nil},
		{"quota reserved", waitingJob(), []runtime.Object{pendingWorkload(20*time.Minute, metav1.ConditionTrue)}, true, nil},
		{"admitted and running", running, []runtime.Object{pendingWorkload(20*time.Minute, metav1.ConditionFalse)}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &events{}
			c, _ := testController(t, WatcherOptions{Kueue: newKueue(tc.workload...), InadmissibleAfter: 10 * time.Minute}, pub, nil, tc.job)
			after, err := c.sync(context.Background(), jobKeyOf(tc.job))
			if err != nil || (after > 0) != tc.wantAfter || after > 10*time.Minute {
				t.Errorf("sync = %s, %v; want a later look %v, within the time left", after, err, tc.wantAfter)
			}
			if got := pub.ids(); !slices.Equal(got, tc.want) {
				t.Fatalf("published %q, want %q", got, tc.want)
			}
			if len(tc.want) == 0 {
				return
			}
			ev := pub.evs[0]
			if ev.Failure.Reason != "Pending" || !strings.Contains(ev.Failure.Message, "insufficient quota") ||
				!strings.Contains(ev.Failure.Message, "queue team-a") || ev.Job.Name != "llm-ft" {
				t.Errorf("event: reason %q message %q job %s; want Kueue's words", ev.Failure.Reason, ev.Failure.Message, ev.Job.Name)
			}
		})
	}
}

func TestVerifyQueuedJobKueueDoesNotAdmit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		workload runtime.Object
		wantErr  error
	}{
		{"inadmissible", pendingWorkload(20*time.Minute, metav1.ConditionFalse), nil},
		{"admitted since", pendingWorkload(20*time.Minute, metav1.ConditionTrue), ErrUnverified},
		{"waiting less than inadmissibleAfter", pendingWorkload(time.Minute, metav1.ConditionFalse), ErrUnverified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := waitingJob()
			v, err := NewVerifier(fake.NewClientset(job), VerifierOptions{Kueue: newKueue(tc.workload), InadmissibleAfter: 10 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			ev := &failure.Event{ID: StuckEventID(job), Job: failure.Job{Namespace: "ml", Name: job.Name, UID: string(job.UID)}}
			_, err = v.Verify(context.Background(), ev)
			if !errors.Is(err, tc.wantErr) && (err != nil || tc.wantErr != nil) {
				t.Errorf("Verify = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// A Job suspended without a queue is not Kueue's: nothing is read for it.
func TestSyncSuspendedJobWithoutQueue(t *testing.T) {
	job := waitingJob()
	delete(job.Labels, LabelQueueName)
	job.Spec.Template.Spec.NodeSelector = nil
	job.Spec.Template.Spec.Tolerations = []corev1.Toleration{}
	pub := &events{}
	c, _ := testController(t, WatcherOptions{Kueue: newKueue(pendingWorkload(time.Hour, metav1.ConditionFalse))}, pub, nil, job)
	if after, err := c.sync(context.Background(), jobKeyOf(job)); err != nil || after != 0 || len(pub.ids()) != 0 {
		t.Errorf("sync = %s, %v, published %q; want nothing", after, err, pub.ids())
	}
}
