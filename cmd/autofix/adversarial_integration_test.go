//go:build integration

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/remediate"
)

// TestIntegrationAdversarial replays issue 11's Kubernetes findings on the real
// control plane: forged events, chain labels, same-named Jobs in two namespaces, a
// squatted attempt name, a forged outcome, and an API server that refuses the fix.
func TestIntegrationAdversarial(t *testing.T) {
	s := startStack(t, "team-b", "locked")
	ctx := context.Background()
	p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: []string{s.cfg.Kafka.EmbeddedAddr}, Topic: s.cfg.Kafka.Topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	publish := func(ev *failure.Event) {
		t.Helper()
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(ctx, ingest.Message{Key: []byte("k"), Value: b}); err != nil {
			t.Fatal(err)
		}
	}
	oom := map[string]string{truthMemory: "20Gi"}

	t.Run("forged OOM of a Job that succeeded", func(t *testing.T) {
		done := s.createJob(t, "done", jobOpts{kind: "training", memory: "16Gi"})
		waitFor(t, "done to complete", 60*time.Second, func() bool {
			j, err := s.c.Client.BatchV1().Jobs("ml").Get(ctx, "done", metav1.GetOptions{})
			return err == nil && complete(j)
		})
		publish(&failure.Event{ID: remediate.JobEventID(done), Job: failure.Job{Namespace: "ml", Name: "done", UID: string(done.UID),
			Resources: failure.Resources{MemoryBytes: 16 << 30}}, Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}})
		r := s.about(t, remediate.JobEventID(done), "ml", "done")
		if r.State != ledger.Rejected || !strings.Contains(r.Reason, "has not failed") {
			t.Errorf("forged OOM of a complete Job: %s (%q), want rejected", r.State, r.Reason)
		}
	})

	t.Run("a kept spec is not created in another namespace", func(t *testing.T) {
		failed := s.createJob(t, "secret-train", jobOpts{kind: "training", memory: "16Gi", truth: map[string]string{truthUserCode: "true"}})
		s.remediation(t, failed, 60*time.Second, ledger.Rejected) // user code: not retried, but its spec is kept
		id := remediate.StuckEventID(failed)
		publish(&failure.Event{ID: id, Job: failure.Job{Namespace: "team-b", Name: "secret-train", UID: string(failed.UID),
			Resources: failure.Resources{MemoryBytes: 16 << 30}}, Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}})
		if r := s.about(t, id, "team-b", "secret-train"); r.State != ledger.Rejected {
			t.Errorf("team-a's spec claimed in team-b: %s (%q), want rejected", r.State, r.Reason)
		}
		if _, err := s.c.Client.BatchV1().Jobs("team-b").Get(ctx, "secret-train-af2", metav1.GetOptions{}); err == nil {
			t.Error("secret-train-af2 was created in team-b")
		}
	})

	t.Run("chain labels and attempt 99 on a real failure", func(t *testing.T) {
		victim := s.createJob(t, "victim", jobOpts{kind: "batch", memory: "16Gi", truth: oom})
		s.remediation(t, victim, 90*time.Second, ledger.Succeeded)
		evil := s.createJob(t, "evil", jobOpts{kind: "batch", memory: "16Gi", truth: oom,
			labels: map[string]string{"autofix.io/chain": "victim", failure.LabelOriginal: "victim", failure.LabelAttempt: "99"}})
		r := s.remediation(t, evil, 90*time.Second, ledger.Succeeded)
		if r.ChainID != "ml/evil" || r.Attempt != 1 || r.Attempts[len(r.Attempts)-1].JobName != "evil-af2" {
			t.Errorf("evil: chain %s attempt %d attempts %+v; want a chain of its own", r.ChainID, r.Attempt, r.Attempts)
		}
		runs, err := s.store.ChainAttempts(ctx, []string{"ml/victim"})
		if err != nil || runs["ml/victim"] != 2 {
			t.Errorf("victim's chain: %d runs (%v), want 2", runs["ml/victim"], err)
		}
	})

	t.Run("same name in two namespaces", func(t *testing.T) {
		a := s.createJob(t, "twin", jobOpts{kind: "batch", memory: "16Gi", truth: oom})
		b := s.createJob(t, "twin", jobOpts{namespace: "team-b", kind: "batch", memory: "16Gi", truth: oom})
		for _, j := range []*batchv1.Job{a, b} {
			if r := s.remediation(t, j, 90*time.Second, ledger.Succeeded, ledger.Abandoned); r.State != ledger.Succeeded {
				t.Errorf("twin in %s: %s (%s), want succeeded", j.Namespace, r.State, r.Audit[len(r.Audit)-1].Detail)
			}
		}
	})

	t.Run("a squatted attempt name", func(t *testing.T) {
		squat := s.createJob(t, "squatted-af2", jobOpts{kind: "batch", memory: "1Gi"})
		failed := s.createJob(t, "squatted", jobOpts{kind: "batch", memory: "16Gi", truth: oom})
		r := s.remediation(t, failed, 90*time.Second, ledger.Abandoned, ledger.Succeeded, ledger.Failed)
		if r.State != ledger.Abandoned || !strings.Contains(r.Audit[len(r.Audit)-1].Detail, "did not create") {
			t.Errorf("squatted: %s (%s), want abandoned: the name is someone else's Job", r.State, r.Audit[len(r.Audit)-1].Detail)
		}
		j, err := s.c.Client.BatchV1().Jobs("ml").Get(ctx, "squatted-af2", metav1.GetOptions{})
		if err != nil || j.UID != squat.UID {
			t.Errorf("the squatter's Job was replaced (%v)", err)
		}
	})

	t.Run("a forged outcome", func(t *testing.T) {
		victim := s.createJob(t, "slow-victim", jobOpts{kind: "batch", memory: "16Gi", truth: oom})
		// A Job that claims to be the victim's attempt, and fails at once.
		s.createJob(t, "claimant", jobOpts{kind: "batch", memory: "1Gi", truth: map[string]string{truthUserCode: "true"},
			labels:      map[string]string{failure.LabelManaged: "true"},
			annotations: map[string]string{failure.AnnotationRemediation: remediate.JobEventID(victim)}})
		r := s.remediation(t, victim, 90*time.Second, ledger.Succeeded, ledger.Failed)
		if r.State != ledger.Succeeded {
			t.Errorf("the victim's fix: %s (%s), want succeeded: another Job's outcome was taken for it", r.State, r.Audit[len(r.Audit)-1].Detail)
		}
	})

	t.Run("the API server refuses the fix", func(t *testing.T) {
		// An admission policy forbids autofix's attempts in namespace locked: a 403
		// every time. The fix is abandoned, not retried for ever.
		policy := &admissionv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "no-retries"},
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr(admissionv1.Fail),
				MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Create},
						Rule: admissionv1.Rule{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"jobs"}}}}}},
				Validations: []admissionv1.Validation{{Expression: `!object.metadata.name.endsWith("-af2")`,
					Message: "no retries here", Reason: ptr(metav1.StatusReasonForbidden)}}}}
		binding := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "no-retries"},
			Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "no-retries",
				ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
				MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{corev1.LabelMetadataName: "locked"}}}}}
		if _, err := s.c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The policy takes effect once the API server has loaded it.
		probe := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "probe-af2", Namespace: "locked"},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
		waitFor(t, "the admission policy to take effect", 30*time.Second, func() bool {
			_, err := s.c.Client.BatchV1().Jobs("locked").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err != nil
		})
		failed := s.createJob(t, "locked-train", jobOpts{namespace: "locked", kind: "batch", memory: "16Gi", truth: oom})
		r := s.remediation(t, failed, 90*time.Second, ledger.Abandoned, ledger.Submitted)
		if r.State != ledger.Abandoned || !strings.Contains(r.Audit[len(r.Audit)-1].Detail, "no retries here") {
			t.Errorf("refused fix: %s (%s), want abandoned with the API server's reason", r.State, r.Audit[len(r.Audit)-1].Detail)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// about waits for the event id about Job namespace/name to be recorded — under its
// id, or, rejected by the verifier, under its position — and returns it.
func (s *stack) about(t *testing.T, id, namespace, name string) ledger.Remediation {
	t.Helper()
	var r ledger.Remediation
	waitFor(t, id+" recorded", 30*time.Second, func() bool {
		list, err := s.store.List(context.Background(), ledger.Filter{Namespace: namespace, Job: name, Limit: 100})
		if err != nil {
			return false
		}
		for _, m := range list {
			if m.Event != nil && m.Event.ID == id {
				r = m
				return true
			}
		}
		return false
	})
	return r
}
