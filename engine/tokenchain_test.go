package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/remediate"
)

// realVerifier is cmd/autofix's kubeVerifier: remediate.Verifier as an engine.Verifier.
type realVerifier struct{ v *remediate.Verifier }

func (k realVerifier) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
	v, err := k.v.Verify(ctx, ev)
	if errors.Is(err, remediate.ErrUnverified) {
		err = errors.Join(err, ErrUnverified)
	}
	return Verified{Job: v.Job, Remediation: v.Remediation, Token: v.Token}, err
}

func failedK8sJob(name, uid string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", UID: types.UID(uid), Labels: map[string]string{}, Annotations: map[string]string{}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "train:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"),
				corev1.ResourceMemory: resource.MustParse("8Gi")}}}}}}},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}},
	}
}

// TestCopiedMarksJoinTheVictimsChain: a tenant's Job that copied an attempt's name,
// autofix's label and the remediation's annotation, but not the attempt's token,
// does not join the victim's chain when it fails, and spends none of its budget.
// Before, the token was checked when submitting and recording outcomes, not here.
func TestCopiedMarksJoinTheVictimsChain(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		victim := failedK8sJob("train", "u-train")
		client := fake.NewClientset(victim)
		rv, err := remediate.NewVerifier(client, remediate.VerifierOptions{Namespaces: []string{"ml"}})
		if err != nil {
			t.Fatal(err)
		}
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: realVerifier{rv}}
		oom := func(j *batchv1.Job) *failure.Event {
			return &failure.Event{ID: "k8s-job-" + string(j.UID), Job: failure.Job{Namespace: "ml", Name: j.Name, UID: string(j.UID), Kind: failure.Batch},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}}
		}
		r := handle(t, in, oom(victim), 1)
		a, ok := OwnAttempt(&r)
		if r.State != ledger.Approved || !ok || a.JobName != "train-af2" || a.Token == "" {
			t.Fatalf("victim: %s %+v", r.State, a)
		}
		squat := failedK8sJob("train-af2", "u-squat")
		squat.Labels[failure.LabelManaged] = "true"
		squat.Annotations[failure.AnnotationRemediation] = r.EventID // copied; the token is not
		if _, err := client.BatchV1().Jobs("ml").Create(ctx, squat, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := handle(t, in, oom(squat), 2)
		if got.ChainID == "ml/train" {
			t.Errorf("a Job without the attempt's token joined the victim's chain as attempt %d (its fix: %+v)", got.Attempt, got.Attempts)
		}
	})
}

// TestOneRolloutOneRemediation: one healthy Deployment, fifty forged rollout
// failures with made-up generations: none is decided. A second review found each
// verified and decided — a pending review (never pruned: not ended) and an outcome
// in the Deployment template's history.
func TestOneRolloutOneRemediation(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		ctx := context.Background()
		pol := policy.Default()
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "serve", Namespace: "ml", UID: "dd", Generation: 3}}
		rv, err := remediate.NewVerifier(fake.NewClientset(d), remediate.VerifierOptions{Namespaces: []string{"ml"}})
		if err != nil {
			t.Fatal(err)
		}
		in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol, Verifier: realVerifier{rv}}
		for i := range 50 {
			ev := &failure.Event{ID: fmt.Sprintf("k8s-deploy-dd-%d", 1000+i), Job: failure.Job{Namespace: "ml", Name: "serve", UID: "dd", Kind: failure.Deployment},
				Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, Usage: failure.Usage{PeakMemoryBytes: 900 << 30}}}
			if _, err := in.Handle(ctx, []ingest.Message{{Topic: "f", Offset: int64(i), Value: mustJSON(t, ev)}}); err != nil {
				t.Fatal(err)
			}
		}
		counts, err := store.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hist, _ := store.History(ctx, []string{"ml/serve"}, 0)
		if counts[ledger.PendingReview] > 1 || len(hist["ml/serve"]) > 1 {
			t.Errorf("one Deployment at generation 3: %d pending reviews, %d outcomes in its history from forged rollout ids",
				counts[ledger.PendingReview], len(hist["ml/serve"]))
		}
	})
}
