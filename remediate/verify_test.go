package remediate

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/policy"
)

// withCondition returns job with a Job condition of type c set to True.
func withCondition(job *batchv1.Job, c batchv1.JobConditionType) *batchv1.Job {
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: c, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"})
	return job
}

// eventFor is the event the watcher would publish for job, with what a forger
// might claim in it instead.
func eventFor(job *batchv1.Job) *failure.Event {
	return &failure.Event{ID: JobEventID(job), Job: failure.Job{Namespace: job.Namespace, Name: job.Name, UID: string(job.UID),
		Resources: failure.Resources{MemoryBytes: 1 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
}

// TestVerifyRefusesForgedEvents: an event is acted on only when the cluster bears it
// out. Before, Submit took namespace, name and uid from the event: a forged OOMKilled
// of a Job that had succeeded was re-run, and a spec kept for team-a was created in
// team-b.
func TestVerifyRefusesForgedEvents(t *testing.T) {
	ctx := context.Background()
	failed := withCondition(failedJob(), batchv1.JobFailed)
	succeeded := withCondition(failedJob(), batchv1.JobComplete)
	succeeded.Name, succeeded.UID = "llm-done", "d0e"
	other := withCondition(failedJob(), batchv1.JobFailed)
	other.Namespace, other.UID = "team-b", "b0b"
	unlabelled := withCondition(failedJob(), batchv1.JobFailed)
	unlabelled.Name, unlabelled.UID, unlabelled.Labels = "no-label", "n0", map[string]string{}
	keptA := withCondition(failedJob(), batchv1.JobFailed)
	keptA.Namespace, keptA.UID = "team-a", "a0a" // kept, then deleted
	client := fake.NewClientset(failed, succeeded, other, unlabelled)
	v, err := NewVerifier(client, VerifierOptions{Namespaces: []string{"ml", "team-b"}, Selector: "team=nlp", Specs: specs{"a0a": keptA}})
	if err != nil {
		t.Fatal(err)
	}
	crossNS := eventFor(keptA)
	crossNS.Job.Namespace = "team-b" // team-a's kept spec, claimed for team-b
	otherUID := eventFor(failed)
	otherUID.Job.UID, otherUID.ID = "ffff", "k8s-job-ffff"
	noUID := eventFor(failed)
	noUID.Job.UID = ""
	wrongID := eventFor(failed)
	wrongID.ID = "my-own-id"
	for _, tt := range []struct {
		name string
		ev   *failure.Event
		want string // "" for verified
	}{
		{"the real failure", eventFor(failed), ""},
		{"a Job that succeeded", eventFor(succeeded), "has not failed"},
		{"no uid", noUID, "job.uid: required"},
		{"another uid", otherUID, "no Job ml/llm-ft with uid ffff"},
		{"an id of its own", wrongID, `id "my-own-id"`},
		{"an unwatched namespace", eventFor(keptA), `namespace "team-a" is not one autofix watches`},
		{"a kept spec claimed in another namespace", crossNS, "no Job team-b/llm-ft with uid a0a"},
		{"not selected", eventFor(unlabelled), "does not match the selector"},
		{"the failure of a watched Job in team-b", eventFor(other), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(ctx, tt.ev)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want verified", err)
				}
				if got.Job.Resources.MemoryBytes != 64<<30 || got.Job.UID != tt.ev.Job.UID {
					t.Errorf("Verify described the job as %+v; want the cluster's (64Gi), not the event's (1Gi)", got.Job)
				}
				return
			}
			if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify = %v, want ErrUnverified saying %q", err, tt.want)
			}
		})
	}
}

// TestVerifyKeptAndStuck: a failed Job that is gone is verified from the spec the
// watcher kept; a stuck Job only while a pod of it cannot start.
func TestVerifyKeptAndStuck(t *testing.T) {
	ctx := context.Background()
	kept := withCondition(failedJob(), batchv1.JobFailed)
	running := failedJob()
	running.Name, running.UID, running.Status = "pulling", "p1", batchv1.JobStatus{Active: 1}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pulling-x", Namespace: "ml", Labels: map[string]string{batchv1.ControllerUidLabel: "p1"},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(running, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "train",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}}}
	// A pod that only copies the label is not the Job's: it does not make a running
	// Job stuck.
	copied := pod.DeepCopy()
	copied.Name, copied.OwnerReferences = "copied-x", nil
	otherClient := fake.NewClientset(running.DeepCopy(), copied)
	ov, err := NewVerifier(otherClient, VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	forged := eventFor(running)
	forged.ID = StuckEventID(running)
	if _, err := ov.Verify(ctx, forged); !errors.Is(err, ErrUnverified) {
		t.Errorf("a Job whose only stuck pod copies its label: %v, want ErrUnverified", err)
	}
	client := fake.NewClientset(running, pod)
	v, err := NewVerifier(client, VerifierOptions{Specs: specs{string(kept.UID): kept}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, eventFor(kept)); err != nil {
		t.Errorf("a failed Job gone, its spec kept: %v, want verified", err)
	}
	stuck := eventFor(running)
	stuck.ID = StuckEventID(running)
	if _, err := v.Verify(ctx, stuck); err != nil {
		t.Errorf("a Job whose pod cannot pull its image: %v, want verified", err)
	}
	if _, err := v.Verify(ctx, eventFor(running)); !errors.Is(err, ErrUnverified) {
		t.Errorf("a running Job reported failed: %v, want ErrUnverified", err)
	}
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	pod.Status.Phase = corev1.PodRunning
	if _, err := client.CoreV1().Pods("ml").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, stuck); !errors.Is(err, ErrUnverified) {
		t.Errorf("a Job whose pod now runs, reported stuck: %v, want ErrUnverified", err)
	}
}

// TestVerifyDeployment: rollout events name an existing Deployment by uid.
func TestVerifyDeployment(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "serve", Namespace: "ml", UID: "dd", Generation: 3}}
	v, err := NewVerifier(fake.NewClientset(d), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev := &failure.Event{ID: DeploymentEventID(d), Job: failure.Job{Namespace: "ml", Name: "serve", UID: "dd", Kind: failure.Deployment}}
	if _, err := v.Verify(context.Background(), ev); err != nil {
		t.Errorf("Verify(real rollout failure) = %v", err)
	}
	ev.Job.UID, ev.ID = "ee", "k8s-deploy-ee-3"
	if _, err := v.Verify(context.Background(), ev); !errors.Is(err, ErrUnverified) {
		t.Errorf("Verify(another uid) = %v, want ErrUnverified", err)
	}
}

// TestVerifyCannotTell: an API server that cannot be asked is not a verdict.
func TestVerifyCannotTell(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("get", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
	})
	v, err := NewVerifier(client, VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), eventFor(failedJob()))
	if err == nil || errors.Is(err, ErrUnverified) {
		t.Errorf("Verify with the API server unavailable = %v, want an error that is not ErrUnverified", err)
	}
}

// TestSubmitRefusesAnotherJobOfTheName: a Job of the attempt's name that autofix did
// not create for this remediation is never taken for the attempt. Before, any Job of
// that name made Submit report success: a tenant could pre-create it.
func TestSubmitRefusesAnotherJobOfTheName(t *testing.T) {
	squatter := failedJob()
	squatter.Name, squatter.UID = "llm-ft-af2", "s1"
	client := fake.NewClientset(failedJob(), squatter)
	err := NewSubmitter(client, SubmitterOptions{}).Submit(context.Background(), submission())
	if !errors.Is(err, ErrCannotSubmit) || !strings.Contains(err.Error(), "did not create") {
		t.Errorf("Submit with the name taken by another Job = %v, want ErrCannotSubmit", err)
	}
}

// TestSubmitErrorsClassified: what a retry cannot mend ends the fix; what it can is
// retried. Before, a 403 or 422 was retried forever.
func TestSubmitErrorsClassified(t *testing.T) {
	gr := schema.GroupResource{Group: "batch", Resource: "jobs"}
	for _, tt := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"403 no RoleBinding", apierrors.NewForbidden(gr, "llm-ft-af2", errors.New("no RoleBinding")), true},
		{"422 invalid", apierrors.NewInvalid(schema.GroupKind{Group: "batch", Kind: "Job"}, "llm-ft-af2", nil), true},
		{"404 namespace gone", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "ml"), true},
		{"500", apierrors.NewInternalError(errors.New("etcd")), false},
		{"429", apierrors.NewTooManyRequests("slow down", 1), false},
		{"503", apierrors.NewServiceUnavailable("restarting"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset(failedJob())
			client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tt.err })
			err := NewSubmitter(client, SubmitterOptions{}).Submit(context.Background(), submission())
			if err == nil || errors.Is(err, ErrCannotSubmit) != tt.permanent {
				t.Errorf("Submit = %v; permanent %v, want %v", err, errors.Is(err, ErrCannotSubmit), tt.permanent)
			}
		})
	}
}

// TestDeadlineOverflow: a deadline no int64 holds is refused, not wrapped around.
// Before, 1e19 seconds became math.MinInt64.
func TestDeadlineOverflow(t *testing.T) {
	sub := submission()
	sub.Option.DeadlineSeconds = 1e19
	if _, err := NewSubmitter(fake.NewClientset(), SubmitterOptions{}).NewAttempt(failedJob(), sub); err == nil {
		t.Error("NewAttempt with a deadline of 1e19 s succeeded")
	}
}

// TestSeenSetBounded: the watcher's memory of what it published stays bounded.
// Before, its published map grew by one entry per failure, forever.
func TestSeenSetBounded(t *testing.T) {
	s := newSeenSet(time.Hour, 1000)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10_000 {
		s.add(strconv.Itoa(i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := s.len(); n > 1000 {
		t.Errorf("after 10,000 adds within an hour, %d kept, want at most 1000", n)
	}
	if !s.has("9999") {
		t.Error("the newest key was forgotten")
	}
	s.add("late", now.Add(3*time.Hour))
	if s.has("9999") || !s.has("late") {
		t.Errorf("keys older than an hour are kept (%d kept)", s.len())
	}
}

// TestNewAttemptPodPolicy: autofix does not re-create, with its own identity, a pod
// the policy does not allow; what it does re-create keeps its pipeline run.
func TestNewAttemptPodPolicy(t *testing.T) {
	job := failedJob()
	yes := true
	job.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
	s := NewSubmitter(fake.NewClientset(), SubmitterOptions{})
	if _, err := s.NewAttempt(job, submission()); err == nil || !strings.Contains(err.Error(), "securityContext.privileged") {
		t.Errorf("NewAttempt(privileged) = %v, want a refusal naming the field", err)
	}
	s = NewSubmitter(fake.NewClientset(), SubmitterOptions{Pods: policy.Pods{AllowPrivileged: true}})
	if _, err := s.NewAttempt(job, submission()); err != nil {
		t.Errorf("NewAttempt(privileged, allowed) = %v", err)
	}
	job = failedJob()
	job.Annotations[failure.AnnotationPipelineRun] = "vision/run4"
	got, err := s.NewAttempt(job, submission())
	if err != nil || got.Annotations[failure.AnnotationPipelineRun] != "vision/run4" {
		t.Errorf("NewAttempt kept annotations %v (%v), want the pipeline run", got.Annotations, err)
	}
}

// TestVerifyReviewFindings: what a review found getting past verification. A name
// that is not a Kubernetes name made client-go fail before asking, which read as "the
// cluster cannot be asked"; a stuck event was taken on trust from a failed Job's kept
// spec; a kind label made a Job pass for a Deployment.
func TestVerifyReviewFindings(t *testing.T) {
	ctx := context.Background()
	kept := withCondition(failedJob(), batchv1.JobFailed)
	labelled := withCondition(failedJob(), batchv1.JobFailed)
	labelled.Name, labelled.UID = "kinded", "k1"
	labelled.Labels[failure.LabelKind] = "deployment"
	v, err := NewVerifier(fake.NewClientset(labelled), VerifierOptions{Specs: specs{string(kept.UID): kept}})
	if err != nil {
		t.Fatal(err)
	}
	slash := eventFor(kept)
	slash.Job.Name = "x/1"
	stuck := eventFor(kept)
	stuck.ID = StuckEventID(kept)
	for _, tt := range []struct {
		name string
		ev   *failure.Event
		want string
	}{
		{"a name with a slash", slash, `job.name: "x/1" is not the name`},
		{"a stuck event for a failed Job that is gone", stuck, "could not start is not re-created"},
	} {
		if _, err := v.Verify(ctx, tt.ev); !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Verify = %v, want ErrUnverified saying %q", tt.name, err, tt.want)
		}
	}
	got, err := v.Verify(ctx, eventFor(labelled))
	if err != nil || got.Job.Kind != failure.Batch {
		t.Errorf("a Job labelled kind deployment: %v, kind %q; want verified as a batch Job", err, got.Job.Kind)
	}
}

// TestSubmitRefusesCopiedMarks: a Job that copied autofix's label and the
// remediation's annotation (both predictable) is not the attempt without its token.
// Before, Submit took it for the attempt, and its outcome became the attempt's.
func TestSubmitRefusesCopiedMarks(t *testing.T) {
	ctx := context.Background()
	sub := submission()
	sub.Token = "3f9a"
	squat := failedJob()
	squat.Name, squat.UID = sub.Name, "s1"
	squat.Labels[failure.LabelManaged] = "true"
	squat.Annotations[failure.AnnotationRemediation] = sub.Remediation
	s := NewSubmitter(fake.NewClientset(failedJob(), squat), SubmitterOptions{})
	if err := s.Submit(ctx, sub); !errors.Is(err, ErrCannotSubmit) {
		t.Errorf("Submit with a copied-marks Job of the attempt's name = %v, want ErrCannotSubmit", err)
	}
	client := fake.NewClientset(failedJob())
	s = NewSubmitter(client, SubmitterOptions{})
	for range 2 { // the second finds its own Job: done
		if err := s.Submit(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}
	j, err := client.BatchV1().Jobs("ml").Get(ctx, sub.Name, metav1.GetOptions{})
	if err != nil || j.Annotations[failure.AnnotationAttemptToken] != "3f9a" {
		t.Errorf("the attempt's Job: %v, token %q; want the attempt's token", err, j.Annotations[failure.AnnotationAttemptToken])
	}
}
