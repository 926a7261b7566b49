package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The labels and annotations are spelt out here rather than taken from the package's
// constants: they are the contract with objects already on clusters.
const (
	managed     = "autofix.io/managed"
	pipelineRun = "autofix.io/pipeline-run"
)

func mustParse(t *testing.T, yaml string) *Definition {
	t.Helper()
	d, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

// deployOnly is a pipeline with only a deploy stage: the model is "" and the stage
// runs at once.
func deployOnly(t *testing.T, canary int) *Definition {
	return mustParse(t, fmt.Sprintf(`
name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: deploy
    kind: deployment
    deploy:
      replicas: 2
      canary: %d
      template: {spec: {containers: [{name: server, image: triton}]}}
`, canary))
}

func trainOnly(t *testing.T) *Definition {
	return mustParse(t, `
name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: train
    kind: training
    job: {spec: {containers: [{name: train, image: pytorch}]}}
`)
}

// serving is a Deployment serving run's model: rolled out, or not.
func serving(name, run string, labels, annotations map[string]string, rolled bool) *appsv1.Deployment {
	two := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", UID: types.UID("uid-" + name), ResourceVersion: "7",
			Labels: labels, Annotations: annotations},
		Spec: appsv1.DeploymentSpec{Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "vision"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "vision"},
					Annotations: map[string]string{"autofix.io/run": run}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "triton:" + run}}}}},
	}
	if rolled {
		d.Status = appsv1.DeploymentStatus{UpdatedReplicas: 2, AvailableReplicas: 2}
	}
	return d
}

// ours are the labels and annotations of a Deployment run made for pipeline.
func ours(pipeline, run string) (map[string]string, map[string]string) {
	return map[string]string{managed: "true", "autofix.io/pipeline": pipeline, "autofix.io/stage": "deploy"},
		map[string]string{pipelineRun: pipeline + "/" + run, "autofix.io/run": run}
}

// writes are the actions that change something.
func writes(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			name := ""
			if n, ok := a.(interface{ GetName() string }); ok {
				name = n.GetName()
			}
			if c, ok := a.(k8stesting.CreateAction); ok {
				if o, ok := c.GetObject().(metav1.Object); ok {
					name = o.GetName()
				}
			}
			if u, ok := a.(k8stesting.UpdateAction); ok {
				if o, ok := u.GetObject().(metav1.Object); ok {
					name = o.GetName()
				}
			}
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource+" "+name)
		}
	}
	return out
}

func TestDeployLeavesDeploymentsAutofixDoesNotOwn(t *testing.T) {
	run1Labels, run1Ann := ours("vision", "run1")
	otherLabels, otherAnn := ours("vision-canary", "run9")
	personLabels := map[string]string{"app.kubernetes.io/name": "vision"}
	tests := []struct {
		name   string
		canary int
		objs   []runtime.Object
		// object is the Deployment the stage must name as not autofix's.
		object string
	}{
		{"a person's Deployment named after the pipeline", 1,
			[]runtime.Object{serving("vision", "", personLabels, nil, true)}, "vision"},
		{"a person's Deployment named after the pipeline, no canary", 0,
			[]runtime.Object{serving("vision", "", personLabels, nil, true)}, "vision"},
		{"a Deployment with the pipeline's labels, not marked managed", 1,
			[]runtime.Object{serving("vision", "run1", map[string]string{"autofix.io/pipeline": "vision"}, run1Ann, true)}, "vision"},
		{"managed, but with no run annotation", 1,
			[]runtime.Object{serving("vision", "run1", run1Labels, map[string]string{"autofix.io/run": "run1"}, true)}, "vision"},
		{"a person's canary beside autofix's stable Deployment", 1,
			[]runtime.Object{serving("vision", "run1", run1Labels, run1Ann, true), serving("vision-canary", "", personLabels, nil, true)},
			"vision-canary"},
		{"another pipeline's stable Deployment where the canary goes", 1,
			[]runtime.Object{serving("vision", "run1", run1Labels, run1Ann, true), serving("vision-canary", "run9", otherLabels, otherAnn, true)},
			"vision-canary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset(tt.objs...)
			d := &Driver{Client: c}
			st, err := d.Step(context.Background(), deployOnly(t, tt.canary), "run2")
			if err != nil {
				t.Fatalf("Step = %v", err)
			}
			if w := writes(c); len(w) > 0 {
				t.Errorf("Step wrote %q; want nothing written", w)
			}
			ss := st.Stages[0]
			if st.Phase != Failed || ss.Phase != Failed || ss.Object != tt.object ||
				!strings.Contains(ss.Message, "deployment ml/"+tt.object+" exists but is not autofix's") {
				t.Errorf("Step = %s, stage %+v; want failed naming deployment ml/%s as not autofix's", st.Phase, ss, tt.object)
			}
			for _, o := range tt.objs {
				want := o.(*appsv1.Deployment)
				got, err := c.AppsV1().Deployments("ml").Get(context.Background(), want.Name, metav1.GetOptions{})
				if err != nil || got.Spec.Template.Spec.Containers[0].Image != want.Spec.Template.Spec.Containers[0].Image {
					t.Errorf("deployment %s after Step: %v, %v; want it as it was", want.Name, got, err)
				}
			}
		})
	}
}

func TestObserveReportsADeploymentAutofixDoesNotOwn(t *testing.T) {
	c := fake.NewClientset(serving("vision", "", nil, nil, true))
	d := &Driver{Client: c, Observe: true}
	st, err := d.Step(context.Background(), deployOnly(t, 1), "run2")
	if err != nil || st.Stages[0].Phase != Failed || !strings.Contains(st.Stages[0].Message, "not autofix's") {
		t.Errorf("Step = %+v, %v; want the deploy stage failed, not autofix's", st, err)
	}
	if w := writes(c); len(w) > 0 {
		t.Errorf("observing wrote %q", w)
	}
}

func TestDeployTakesOverFromAnEarlierRunOfThePipeline(t *testing.T) {
	ctx := context.Background()
	l, a := ours("vision", "run1")
	c := fake.NewClientset(serving("vision", "run1", l, a, true))
	d := &Driver{Client: c}
	if _, err := d.Step(ctx, deployOnly(t, 0), "run2"); err != nil {
		t.Fatalf("Step = %v", err)
	}
	if got, want := writes(c), []string{"update deployments vision"}; !slices.Equal(got, want) {
		t.Fatalf("Step wrote %q, want %q", got, want)
	}
	dep, err := c.AppsV1().Deployments("ml").Get(ctx, "vision", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Annotations[pipelineRun] != "vision/run2" || dep.Labels[managed] != "true" ||
		dep.Spec.Template.Annotations["autofix.io/run"] != "run2" {
		t.Errorf("stable after run2's promotion: labels %v, annotations %v, template %v; want run2's and still autofix's",
			dep.Labels, dep.Annotations, dep.Spec.Template.Annotations)
	}
}

func TestDeployCreatesOwnedObjects(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, c *fake.Clientset, name string) {
		t.Helper()
		dep, err := c.AppsV1().Deployments("ml").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dep.Labels[managed] != "true" || dep.Labels["autofix.io/pipeline"] != "vision" || dep.Annotations[pipelineRun] != "vision/run2" {
			t.Errorf("%s: labels %v annotations %v; want managed, pipeline vision, run vision/run2", name, dep.Labels, dep.Annotations)
		}
	}
	t.Run("first deployment", func(t *testing.T) {
		c := fake.NewClientset()
		if _, err := (&Driver{Client: c}).Step(ctx, deployOnly(t, 1), "run2"); err != nil {
			t.Fatal(err)
		}
		check(t, c, "vision")
	})
	t.Run("canary", func(t *testing.T) {
		l, a := ours("vision", "run1")
		c := fake.NewClientset(serving("vision", "run1", l, a, true))
		if _, err := (&Driver{Client: c}).Step(ctx, deployOnly(t, 1), "run2"); err != nil {
			t.Fatal(err)
		}
		check(t, c, "vision-canary")
	})
}

func TestDeployDeletesOnlyTheCanaryItRead(t *testing.T) {
	ctx := context.Background()
	l, a := ours("vision", "run1")
	c := fake.NewClientset(serving("vision", "run1", l, a, true), serving("vision-canary", "run1", l, a, false))
	if _, err := (&Driver{Client: c}).Step(ctx, deployOnly(t, 1), "run2"); err != nil {
		t.Fatal(err)
	}
	var del k8stesting.DeleteAction
	for _, act := range c.Actions() {
		if d, ok := act.(k8stesting.DeleteAction); ok {
			del = d
		}
	}
	if del == nil || del.GetName() != "vision-canary" {
		t.Fatalf("actions %q: want run1's canary deleted", writes(c))
	}
	p := del.GetDeleteOptions().Preconditions
	if p == nil || p.UID == nil || *p.UID != "uid-vision-canary" {
		t.Errorf("delete preconditions %+v, want the uid read", p)
	}
}

func TestDeployLeavesAForeignCanaryAfterARollout(t *testing.T) {
	l, a := ours("vision", "run2")
	c := fake.NewClientset(serving("vision", "run2", l, a, true), serving("vision-canary", "", nil, nil, true))
	st, err := (&Driver{Client: c}).Step(context.Background(), deployOnly(t, 0), "run2")
	if err != nil || st.Phase != Succeeded {
		t.Fatalf("Step = %+v, %v; want succeeded", st, err)
	}
	if w := writes(c); len(w) > 0 {
		t.Errorf("Step wrote %q; want the person's vision-canary left alone", w)
	}
}

func job(name string, labels, annotations map[string]string, complete bool) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", Labels: labels, Annotations: annotations}}
	if complete {
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	}
	return j
}

func TestJobStageFollowsOnlyItsOwnJobs(t *testing.T) {
	stageLabels := func(extra map[string]string) map[string]string {
		l := map[string]string{"autofix.io/pipeline": "vision", "autofix.io/run": "run1", "autofix.io/stage": "train"}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	first := map[string]string{pipelineRun: "vision/run1"}
	attempt := map[string]string{"autofix.io/remediation": "k8s-job-1", "autofix.io/chain": "ml/vision-run1-train"}
	attemptLabels := stageLabels(map[string]string{managed: "true", "autofix.io/original-job": "vision-run1-train", "autofix.io/attempt": "2"})
	tests := []struct {
		name  string
		objs  []runtime.Object
		phase Phase
		// object is the Job the stage names; message a part of its message.
		object, message string
	}{
		{"a Job of the stage's name, a person's", []runtime.Object{job("vision-run1-train", nil, nil, true)},
			Failed, "vision-run1-train", "job ml/vision-run1-train exists but is not autofix's for pipeline run vision/run1"},
		{"a Job with the stage's labels, not managed", []runtime.Object{job("fake-train", stageLabels(nil), first, true)},
			Failed, "fake-train", "job ml/fake-train exists but is not autofix's"},
		{"a managed Job with the stage's labels, of another run", []runtime.Object{
			job("fake-train", stageLabels(map[string]string{managed: "true"}), map[string]string{pipelineRun: "vision/run0"}, true)},
			Failed, "fake-train", "not autofix's"},
		{"a remediation attempt of another Job", []runtime.Object{
			job("vision-run1-train", stageLabels(map[string]string{managed: "true"}), first, false),
			job("other-af2", stageLabels(map[string]string{managed: "true", "autofix.io/original-job": "other"}), attempt, true)},
			Failed, "other-af2", "not autofix's"},
		{"the stage's Job and its remediation attempt", []runtime.Object{
			job("vision-run1-train", stageLabels(map[string]string{managed: "true"}), first, false),
			job("vision-run1-train-af2", attemptLabels, attempt, true)},
			Succeeded, "vision-run1-train-af2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset(tt.objs...)
			st, err := (&Driver{Client: c}).Step(context.Background(), trainOnly(t), "run1")
			if err != nil {
				t.Fatalf("Step = %v", err)
			}
			ss := st.Stages[0]
			if ss.Phase != tt.phase || ss.Object != tt.object || !strings.Contains(ss.Message, tt.message) {
				t.Errorf("stage = %+v; want %s, object %s, message containing %q", ss, tt.phase, tt.object, tt.message)
			}
			for _, w := range writes(c) {
				if !strings.HasPrefix(w, "create ") {
					t.Errorf("Step wrote %q; want no update or delete", w)
				}
			}
		})
	}
}

// noFailures is a ledger that has recorded no failure.
type noFailures struct{}

func (noFailures) FailureState(context.Context, metav1.Object) (string, string, error) {
	return "", "", nil
}

func TestJobStageCreatesAnOwnedJob(t *testing.T) {
	c := fake.NewClientset()
	st, err := (&Driver{Client: c}).Step(context.Background(), trainOnly(t), "run1")
	if err != nil || st.Stages[0].Phase != Running {
		t.Fatalf("Step = %+v, %v", st, err)
	}
	j, err := c.BatchV1().Jobs("ml").Get(context.Background(), "vision-run1-train", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Labels[managed] != "true" || j.Annotations[pipelineRun] != "vision/run1" {
		t.Errorf("stage Job labels %v annotations %v; want managed and run vision/run1", j.Labels, j.Annotations)
	}
	// The next step follows it.
	st, err = (&Driver{Client: c, Chains: noFailures{}}).Step(context.Background(), trainOnly(t), "run1")
	if err != nil || st.Stages[0].Phase != Running || st.Stages[0].Object != "vision-run1-train" {
		t.Errorf("next Step = %+v, %v; want the stage running its Job", st, err)
	}
}
