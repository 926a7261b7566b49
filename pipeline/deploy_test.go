package pipeline

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The deploy stage's deadlines are measured from the time it wrote on the
// Deployment it started; these tests run in synctest bubbles and let the bubble's
// clock pass the deadline (deployOnly's: 300 s), with the Deployment controller
// played by the test.

// stableOf is run1's stable Deployment of vision, rolled out at revision 1, and
// the ReplicaSet of that revision.
func stableOf(t *testing.T) (*appsv1.Deployment, *appsv1.ReplicaSet) {
	t.Helper()
	l, a := ours("vision", "run1")
	a[revisionAnnotation] = "1"
	d := serving("vision", "run1", l, a, true)
	return d, replicaSetOf(d, "1")
}

// replicaSetOf is the ReplicaSet of d's current template, at revision.
func replicaSetOf(d *appsv1.Deployment, revision string) *appsv1.ReplicaSet {
	t := *d.Spec.Template.DeepCopy()
	t.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "h" + revision
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-h" + revision, Namespace: d.Namespace,
		Labels: t.Labels, Annotations: map[string]string{revisionAnnotation: revision},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Template: t}}
}

// wait lets d of the bubble's time pass before a step.
func wait(d time.Duration) func(*testing.T, *fake.Clientset) {
	return func(*testing.T, *fake.Clientset) { time.Sleep(d) }
}

// then runs the befores one after the other.
func then(befores ...func(*testing.T, *fake.Clientset)) func(*testing.T, *fake.Clientset) {
	return func(t *testing.T, c *fake.Clientset) {
		for _, b := range befores {
			b(t, c)
		}
	}
}

func deployment(t *testing.T, c *fake.Clientset, name string) *appsv1.Deployment {
	t.Helper()
	d, err := c.AppsV1().Deployments("ml").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDeployCanaryThenRollout: a healthy canary is followed by a rolling update of
// the stable Deployment, and removed once that is rolled out.
func TestDeployCanaryThenRollout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stable, rs := stableOf(t)
		c := fake.NewClientset(stable, rs)
		d := &Driver{Client: c}
		running, done := []Phase{Running}, []Phase{Succeeded}
		drive(t, d, deployOnly(t, 1), "run2", []step{
			{name: "canary started", phase: Running, stages: running, writes: []string{"create deployments vision-canary"}},
			{name: "canary starting", before: then(wait(time.Minute), setStatus("vision-canary", rollingTo("1"))), phase: Running, stages: running},
			{name: "canary healthy: promoted", before: setStatus("vision-canary", rolledOutTo("1")),
				phase: Running, stages: running, writes: []string{"update deployments vision"}},
			{name: "rolling out", before: then(wait(time.Minute), setStatus("vision", rollingTo("2"))), phase: Running, stages: running},
			{name: "rolled out: the canary goes", before: setStatus("vision", rolledOutTo("2")),
				phase: Succeeded, stages: done, writes: []string{"delete deployments vision-canary"}},
			{name: "looked at again", phase: Succeeded, stages: done},
		})
		got := deployment(t, c, "vision")
		if got.Spec.Template.Annotations["autofix.io/run"] != "run2" || got.Annotations[pipelineRun] != "vision/run2" ||
			got.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "vision" || got.Spec.Template.Labels["app.kubernetes.io/name"] != "vision" {
			t.Errorf("stable after the rollout: annotations %v, template %v, selector %v; want run2's template under the same selector",
				got.Annotations, got.Spec.Template.ObjectMeta, got.Spec.Selector.MatchLabels)
		}
	})
}

// TestDeployUnhealthyCanary: a canary not healthy within the deadline is removed,
// the stable Deployment stays as it was, and the stage fails, for good.
func TestDeployUnhealthyCanary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stable, rs := stableOf(t)
		c := fake.NewClientset(stable, rs)
		d := &Driver{Client: c}
		const why = "canary of run run2 not healthy within 5m0s (0 of 1 replicas available); the stable deployment stays on revision 1"
		drive(t, d, deployOnly(t, 1), "run2", []step{
			{name: "canary started", phase: Running, stages: []Phase{Running}, writes: []string{"create deployments vision-canary"}},
			{name: "within the deadline", before: wait(299 * time.Second), phase: Running, stages: []Phase{Running}},
			{name: "past it", before: wait(2 * time.Second), phase: Failed, stages: []Phase{Failed}, message: why,
				writes: []string{"update deployments vision", "delete deployments vision-canary"}},
			{name: "looked at again", phase: Failed, stages: []Phase{Failed}, message: why},
		})
		got := deployment(t, c, "vision")
		if got.Spec.Template.Annotations["autofix.io/run"] != "run1" || got.Annotations[AnnotationRollback] != "run2: "+why {
			t.Errorf("stable after the canary failed: template of run %q, rollback note %q; want run1's, and the note",
				got.Spec.Template.Annotations["autofix.io/run"], got.Annotations[AnnotationRollback])
		}
	})
}

// TestDeployStuckRolloutIsRolledBack: a rollout not complete within the deadline
// goes back to the previous revision's template, and the stage fails, for good.
func TestDeployStuckRolloutIsRolledBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stable, rs := stableOf(t)
		c := fake.NewClientset(stable, rs)
		d := &Driver{Client: c}
		const why = "rollout of run run2 unhealthy (2 of 2 replicas available); rolled back to revision 1"
		drive(t, d, deployOnly(t, 0), "run2", []step{
			{name: "promoted", phase: Running, stages: []Phase{Running}, writes: []string{"update deployments vision"}},
			{name: "rolling out", before: func(t *testing.T, c *fake.Clientset) {
				setStatus("vision", rollingTo("2"))(t, c)
				if _, err := c.AppsV1().ReplicaSets("ml").Create(context.Background(), replicaSetOf(deployment(t, c, "vision"), "2"), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}, phase: Running, stages: []Phase{Running}},
			{name: "within the deadline", before: wait(299 * time.Second), phase: Running, stages: []Phase{Running}},
			{name: "past it", before: wait(2 * time.Second), phase: Failed, stages: []Phase{Failed}, message: why,
				writes: []string{"update deployments vision"}},
			{name: "looked at again", phase: Failed, stages: []Phase{Failed}, message: why},
		})
		got := deployment(t, c, "vision")
		if got.Spec.Template.Annotations["autofix.io/run"] != "run1" || got.Annotations["autofix.io/run"] != "run1" ||
			got.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != "" || !strings.HasPrefix(got.Annotations[AnnotationRollback], "run2: ") {
			t.Errorf("stable after the rollback: template %v, annotations %v; want run1's template (without the ReplicaSet's hash) and the rollback noted",
				got.Spec.Template.ObjectMeta, got.Annotations)
		}
	})
}

// TestDeployObserveOnly: observing reports where the deploy stage stands and
// writes nothing, even past a deadline a driver that acts would act on.
func TestDeployObserveOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stable, rs := stableOf(t)
		l, a := ours("vision", "run2")
		a[AnnotationStarted] = time.Now().UTC().Format(time.RFC3339)
		canary := serving("vision-canary", "run2", l, a, false)
		c := fake.NewClientset(stable, rs, canary)
		d := &Driver{Client: c, Observe: true}
		drive(t, d, deployOnly(t, 1), "run2", []step{
			{name: "run2's canary starting", phase: Running, stages: []Phase{Running}},
			{name: "past its deadline", before: wait(time.Hour), phase: Running, stages: []Phase{Running}},
		})
		drive(t, d, deployOnly(t, 1), "run1", []step{
			{name: "run1, rolled out", phase: Succeeded, stages: []Phase{Succeeded}},
		})
	})
}
