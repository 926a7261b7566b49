package remediate

import (
	"context"
	"errors"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

// Found by the review of the workload adapters: fixes that escaped Kueue's queue or
// duplicated queued work. Each test failed before its fix.

// TestJobSetChildJobIsNeverFixedAlone: with the default kinds [Job], a failed child
// Job of a Kueue-admitted JobSet was verified and re-created as a Job of its own —
// no queue label (Kueue labels the JobSet), no owner, the flavor's node selector —
// running outside the ClusterQueue's quota. It is refused.
func TestJobSetChildJobIsNeverFixedAlone(t *testing.T) {
	child := withCondition(queuedJob(), batchv1.JobFailed)
	delete(child.Labels, LabelQueueName)
	ctrl := true
	child.OwnerReferences = []metav1.OwnerReference{{APIVersion: "jobset.x-k8s.io/v1alpha2", Kind: "JobSet", Name: "llm", UID: "js-1", Controller: &ctrl}}
	jobs, err := NewJobs(fake.NewClientset(child), AdapterOptions{Kueue: newKueue()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Verify(context.Background(), eventFor(child)); !errors.Is(err, ErrUnverified) {
		t.Errorf("Verify of a JobSet's child Job with kinds [Job] = %v, want ErrUnverified", err)
	}
}

// TestQueuedJobIsNotCopiedWhileItWaits: the fix of a queued Job Kueue has not
// admitted was a second copy in the same queue, the original still waiting: once
// capacity freed, both would run. It is refused; the event tells people.
func TestQueuedJobIsNotCopiedWhileItWaits(t *testing.T) {
	for _, waited := range []time.Duration{time.Second, 20 * time.Minute} {
		job := waitingJob()
		client := fake.NewClientset(job)
		jobs, err := NewJobs(client, AdapterOptions{Kueue: newKueue(pendingWorkload(waited, metav1.ConditionFalse))})
		if err != nil {
			t.Fatal(err)
		}
		ev := &failure.Event{ID: StuckEventID(job), Job: failure.Job{Namespace: "ml", Name: job.Name, UID: string(job.UID)}}
		v, err := jobs.Verify(context.Background(), ev)
		if err != nil {
			continue // refused earlier: fine
		}
		sub := submission()
		sub.Option.Resources.GPUType = ""
		if err := jobs.CreateFrom(context.Background(), sub, v); !errors.Is(err, ErrCannotSubmit) {
			t.Errorf("queued %v: CreateFrom of a Job still waiting in its queue = %v, want ErrCannotSubmit", waited, err)
		}
		list, _ := client.BatchV1().Jobs("ml").List(context.Background(), metav1.ListOptions{})
		if len(list.Items) != 1 {
			t.Errorf("queued %v: %d Jobs, want the original alone", waited, len(list.Items))
		}
	}
}

// TestAdmittedJobWithoutItsWorkloadIsNotCopied: a queued Job removed by its TTL is
// fixed from its kept spec, and its Workload went with it: what Kueue's admission
// injected (the old flavor's node selector, kueue.x-k8s.io/workload) was copied, so
// the fix stayed suspended or ran on the old flavor's nodes. It is refused.
func TestAdmittedJobWithoutItsWorkloadIsNotCopied(t *testing.T) {
	client := fake.NewClientset()
	jobs, err := NewJobs(client, AdapterOptions{Kueue: newKueue()})
	if err != nil {
		t.Fatal(err)
	}
	sub := submission()
	sub.Option.Resources.GPUType = ""
	if err := jobs.CreateFrom(context.Background(), sub, Verified{Base: queuedJob()}); !errors.Is(err, ErrCannotSubmit) {
		t.Errorf("CreateFrom of an admitted Job whose Workload is gone = %v, want ErrCannotSubmit", err)
	}
}

// TestControlledJobSetIsNotFixed: a JobSet another object controls (Kubeflow
// Trainer's TrainJob, which Kueue admits in its place) was re-created as an orphan
// that ran at once, outside the queue. It is refused.
func TestControlledJobSetIsNotFixed(t *testing.T) {
	js := failedJobSet()
	delete(js.Labels, LabelQueueName)
	js.OwnerReferences = []metav1.OwnerReference{{APIVersion: "trainer.kubeflow.org/v1alpha1", Kind: "TrainJob", Name: "llm", UID: "tj-1", Controller: new(true)}}
	a, err := NewJobSets(fake.NewClientset(), jobSetClients(js), AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev := &failure.Event{ID: JobSetEventID(js), Job: failure.Job{Namespace: "ml", Name: js.Name, UID: string(js.UID), Labels: map[string]string{}}}
	if _, err := a.Verify(context.Background(), ev); !errors.Is(err, ErrUnverified) {
		t.Errorf("Verify of a JobSet a TrainJob controls = %v, want ErrUnverified", err)
	}
}
