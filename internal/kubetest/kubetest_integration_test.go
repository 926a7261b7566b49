//go:build integration

package kubetest

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/simcluster"
)

// TestJobControllerRunsJobs: the real Job controller turns the test kubelet's pod
// outcomes into Job conditions.
func TestIntegrationJobController(t *testing.T) {
	c := Start(t)
	RunKubelet(t, c.Client, func(p *corev1.Pod) simcluster.Outcome {
		if p.Labels["want"] == "fail" {
			return simcluster.Outcome{Reason: "OOMKilled", ExitCode: 137}
		}
		return simcluster.Outcome{Succeed: true}
	})
	ctx := context.Background()
	zero := int32(0)
	for _, want := range []string{"ok", "fail"} {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j-" + want, Namespace: "default"},
			Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"want": want}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}}}
		if _, err := c.Client.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]batchv1.JobConditionType{"j-ok": batchv1.JobComplete, "j-fail": batchv1.JobFailed}
	deadline := time.Now().Add(60 * time.Second)
	for name, cond := range want {
		for {
			j, err := c.Client.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			done := false
			for _, jc := range j.Status.Conditions {
				done = done || (jc.Type == cond && jc.Status == corev1.ConditionTrue)
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s: no %s condition; status %+v", name, cond, j.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
