//go:build integration

package kubetest

import (
	"fmt"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/autofix/autofix/internal/testwait"
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
	ctx := testwait.Context(t)
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
	// Each Job is watched until its condition is true, as long as the test may run:
	// how soon the controller gets there depends on the machine.
	for name, cond := range map[string]batchv1.JobConditionType{"j-ok": batchv1.JobComplete, "j-fail": batchv1.JobFailed} {
		lw := cache.NewListWatchFromClient(c.Client.BatchV1().RESTClient(), "jobs", "default", fields.OneTermEqualSelector("metadata.name", name))
		var last *batchv1.Job
		_, err := watchtools.UntilWithSync(ctx, lw, &batchv1.Job{}, nil, func(ev watch.Event) (bool, error) {
			j, ok := ev.Object.(*batchv1.Job)
			if !ok {
				return false, nil
			}
			last = j
			for _, jc := range j.Status.Conditions {
				if jc.Type == cond && jc.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			status := "never seen"
			if last != nil {
				status = fmt.Sprintf("%+v", last.Status)
			}
			t.Fatalf("job %s: no %s condition (%v); status %s", name, cond, err, status)
		}
	}
}
