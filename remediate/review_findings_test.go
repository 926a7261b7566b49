package remediate

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

// TestVerifyReportsTheAttemptToken: Verify reports a managed Job's remediation
// annotation together with its attempt token (none, for a copy), so that the caller
// can check both against its records before placing the failure in a chain.
func TestVerifyReportsTheAttemptToken(t *testing.T) {
	copyJob := withCondition(failedJob(), batchv1.JobFailed)
	copyJob.Name, copyJob.UID = "llm-ft-af2", "c0py"
	copyJob.Labels[failure.LabelManaged] = "true"
	copyJob.Annotations[failure.AnnotationRemediation] = "k8s-job-0b1c" // the victim's remediation; no token
	v, err := NewVerifier(fake.NewClientset(copyJob), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(context.Background(), eventFor(copyJob))
	if err != nil {
		t.Fatal(err)
	}
	if got.Remediation != "k8s-job-0b1c" || got.Token != "" {
		t.Errorf("Verify = remediation %q token %q; want the claim and no token", got.Remediation, got.Token)
	}
}

// TestDeploymentIDIsOnePerRollout: the watcher names a rollout's failure
// k8s-deploy-<uid>-<generation>; Verify checks only the prefix, so one Deployment
// yields any number of verified remediations (each decided, each an outcome in its
// template's history).
func TestDeploymentIDIsOnePerRollout(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "serve", Namespace: "ml", UID: "dd", Generation: 3}}
	v, err := NewVerifier(fake.NewClientset(d), VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"k8s-deploy-dd-4", "k8s-deploy-dd-999999", "k8s-deploy-dd-anything-at-all"} {
		ev := &failure.Event{ID: id, Job: failure.Job{Namespace: "ml", Name: "serve", UID: "dd", Kind: failure.Deployment}}
		if _, err := v.Verify(context.Background(), ev); err == nil {
			t.Errorf("%s verified for Deployment ml/serve at generation 3", id)
		}
	}
}
