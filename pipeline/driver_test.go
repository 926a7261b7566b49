package pipeline

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The driver keeps no state: each Step reads the cluster and the ledger and acts
// once. These tests call Step directly, playing the cluster's controllers (and
// remediation) in between, and check after each step what a user would look at:
// the run's and the stages' phases, and what was created, updated or deleted.

const threeStages = `
name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: train
    kind: training
    maxAttempts: 2
    job: {spec: {containers: [{name: train, image: pytorch}]}}
  - name: compress
    kind: compression
    job: {spec: {containers: [{name: q, image: trt}]}}
  - name: deploy
    kind: deployment
    deploy:
      replicas: 2
      canary: 1
      progressDeadlineSeconds: 60
      template: {spec: {containers: [{name: server, image: triton}]}}
`

// chains is the remediation state of failed Jobs, by name: {state, reason}.
type chains map[string][2]string

func (l chains) FailureState(_ context.Context, w metav1.Object) (string, string, error) {
	s := l[w.GetName()]
	return s[0], s[1], nil
}

// step is one Step of the driver and what it should report and write.
type step struct {
	name string
	// before is what happens on the cluster (its controllers, remediation) first.
	before func(t *testing.T, c *fake.Clientset)
	phase  Phase
	stages []Phase
	writes []string
	// message is a part of the message of the stage that is neither pending nor
	// succeeded ("" for any).
	message string
}

// drive runs steps one after the other on c.
func drive(t *testing.T, d *Driver, def *Definition, run string, steps []step) {
	t.Helper()
	c := d.Client.(*fake.Clientset)
	for _, s := range steps {
		if s.before != nil {
			s.before(t, c)
		}
		c.ClearActions()
		st, err := d.Step(context.Background(), def, run)
		if err != nil {
			t.Fatalf("%s: Step = %v", s.name, err)
		}
		var phases []Phase
		msg := ""
		for _, ss := range st.Stages {
			phases = append(phases, ss.Phase)
			if ss.Phase != Pending && ss.Phase != Succeeded {
				msg = ss.Message
			}
		}
		if st.Phase != s.phase || !slices.Equal(phases, s.stages) || !strings.Contains(msg, s.message) {
			t.Errorf("%s: Step = %s, stages %v, message %q; want %s, %v, a message containing %q", s.name, st.Phase, phases, msg, s.phase, s.stages, s.message)
		}
		if got := writes(c); !slices.Equal(got, s.writes) {
			t.Errorf("%s: Step wrote %q, want %q", s.name, got, s.writes)
		}
	}
}

// jobEnds plays the Job controller: the Job name ends with condition.
func jobEnds(name string, condition batchv1.JobConditionType) func(*testing.T, *fake.Clientset) {
	return func(t *testing.T, c *fake.Clientset) {
		t.Helper()
		j, err := c.BatchV1().Jobs("ml").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: condition, Status: corev1.ConditionTrue})
		if _, err := c.BatchV1().Jobs("ml").UpdateStatus(context.Background(), j, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// setStatus plays the Deployment controller: name's status becomes what edit makes it.
func setStatus(name string, edit func(*appsv1.Deployment)) func(*testing.T, *fake.Clientset) {
	return func(t *testing.T, c *fake.Clientset) {
		t.Helper()
		d, err := c.AppsV1().Deployments("ml").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		edit(d)
		if _, err := c.AppsV1().Deployments("ml").UpdateStatus(context.Background(), d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// rolledOutTo: every replica runs the current template and is available.
func rolledOutTo(revision string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		n := *d.Spec.Replicas
		d.Annotations[revisionAnnotation] = revision
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, AvailableReplicas: n}
	}
}

// rollingTo: the new template's first replica is up, not yet available.
func rollingTo(revision string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Annotations[revisionAnnotation] = revision
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 2, UnavailableReplicas: 1}
	}
}

func env(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

func TestStepRunsThePipelineToTheEnd(t *testing.T) {
	c := fake.NewClientset()
	d := &Driver{Client: c, Chains: chains{}}
	drive(t, d, mustParse(t, threeStages), "run1", []step{
		{name: "start", phase: Running, stages: []Phase{Running, Pending, Pending}, writes: []string{"create jobs vision-run1-train"}},
		{name: "training", phase: Running, stages: []Phase{Running, Pending, Pending}},
		{name: "trained", before: jobEnds("vision-run1-train", batchv1.JobComplete),
			phase: Running, stages: []Phase{Succeeded, Running, Pending}, writes: []string{"create jobs vision-run1-compress"}},
		{name: "compressed: a first deployment, without a canary", before: jobEnds("vision-run1-compress", batchv1.JobComplete),
			phase: Running, stages: []Phase{Succeeded, Succeeded, Running}, writes: []string{"create deployments vision"}},
		{name: "rolling out", before: setStatus("vision", rollingTo("1")), phase: Running, stages: []Phase{Succeeded, Succeeded, Running}},
		{name: "rolled out", before: setStatus("vision", rolledOutTo("1")),
			phase: Succeeded, stages: []Phase{Succeeded, Succeeded, Succeeded}},
	})
	ctx := context.Background()
	j, err := c.BatchV1().Jobs("ml").Get(ctx, "vision-run1-compress", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{managed: "true", "autofix.io/pipeline": "vision", "autofix.io/run": "run1", "autofix.io/stage": "compress",
		"autofix.io/kind": "compression", "autofix.io/template": "vision-compress", "autofix.io/max-attempts": "3"}
	for k, v := range wantLabels {
		if j.Labels[k] != v {
			t.Errorf("compress Job label %s = %q, want %q", k, j.Labels[k], v)
		}
	}
	e := env(j.Spec.Template.Spec.Containers[0])
	if j.Annotations[pipelineRun] != "vision/run1" || *j.Spec.BackoffLimit != 0 || j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever ||
		e["ARTIFACT_IN"] != "s3://m/run1/train" || e["ARTIFACT_OUT"] != "s3://m/run1/compress" {
		t.Errorf("compress Job: annotations %v, backoffLimit %d, restartPolicy %q, env %v; want run vision/run1, 0, Never, the trained model in and its own artifact out",
			j.Annotations, *j.Spec.BackoffLimit, j.Spec.Template.Spec.RestartPolicy, e)
	}
	dep, err := c.AppsV1().Deployments("ml").Get(ctx, "vision", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e := env(dep.Spec.Template.Spec.Containers[0]); e["MODEL_URI"] != "s3://m/run1/compress" || *dep.Spec.Replicas != 2 ||
		dep.Annotations[pipelineRun] != "vision/run1" || dep.Spec.Template.Annotations["autofix.io/run"] != "run1" ||
		dep.Spec.Selector.MatchLabels["autofix.io/track"] != "stable" {
		t.Errorf("deployment: env %v, replicas %d, annotations %v, template annotations %v, selector %v; want the compressed model on 2 stable replicas of run1",
			e, *dep.Spec.Replicas, dep.Annotations, dep.Spec.Template.Annotations, dep.Spec.Selector.MatchLabels)
	}
}

// TestStepFollowsAFailedStagesRemediation: a failed stage waits for the ledger to
// record it, for review, and for the attempt remediation creates; the attempt's
// success is the stage's.
func TestStepFollowsAFailedStagesRemediation(t *testing.T) {
	c := fake.NewClientset()
	l := chains{}
	d := &Driver{Client: c, Chains: l}
	running := []Phase{Running, Pending, Pending}
	drive(t, d, mustParse(t, threeStages), "run1", []step{
		{name: "start", phase: Running, stages: running, writes: []string{"create jobs vision-run1-train"}},
		{name: "failed, not recorded yet", before: jobEnds("vision-run1-train", batchv1.JobFailed),
			phase: Running, stages: running, message: "waiting for autofix serve to record it"},
		{name: "recorded", before: func(*testing.T, *fake.Clientset) { l["vision-run1-train"] = [2]string{"decided", ""} },
			phase: Running, stages: running, message: "vision-run1-train failed; remediating"},
		{name: "its fix awaits review", before: func(*testing.T, *fake.Clientset) { l["vision-run1-train"] = [2]string{"pending_review", ""} },
			phase: Running, stages: running, message: "its fix waits for review"},
		{name: "the attempt remediation made succeeds", before: func(t *testing.T, c *fake.Clientset) {
			l["vision-run1-train"] = [2]string{"submitted", ""}
			attempt := job("vision-run1-train-af2", map[string]string{managed: "true", "autofix.io/pipeline": "vision", "autofix.io/run": "run1",
				"autofix.io/stage": "train", "autofix.io/original-job": "vision-run1-train", "autofix.io/attempt": "2"},
				map[string]string{"autofix.io/remediation": "k8s-job-1"}, true)
			if _, err := c.BatchV1().Jobs("ml").Create(context.Background(), attempt, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, phase: Running, stages: []Phase{Succeeded, Running, Pending}, writes: []string{"create jobs vision-run1-compress"}},
	})
	st, err := d.Step(context.Background(), mustParse(t, threeStages), "run1")
	if err != nil || st.Stages[0].Object != "vision-run1-train-af2" || st.Stages[0].Attempts != 2 {
		t.Errorf("train stage %+v, %v; want succeeded by attempt 2, vision-run1-train-af2", st.Stages[0], err)
	}
}

// TestStepEndsARunWhoseStageIsNotRetried: a failure remediation rejects or abandons
// fails the stage and the run; nothing after it starts.
func TestStepEndsARunWhoseStageIsNotRetried(t *testing.T) {
	for _, state := range []string{"rejected", "abandoned"} {
		t.Run(state, func(t *testing.T) {
			c := fake.NewClientset()
			l := chains{}
			d := &Driver{Client: c, Chains: l}
			drive(t, d, mustParse(t, threeStages), "run1", []step{
				{name: "start", phase: Running, stages: []Phase{Running, Pending, Pending}, writes: []string{"create jobs vision-run1-train"}},
				{name: "failed, not retried", before: func(t *testing.T, c *fake.Clientset) {
					jobEnds("vision-run1-train", batchv1.JobFailed)(t, c)
					l["vision-run1-train"] = [2]string{state, "the policy allows 2 attempts"}
				}, phase: Failed, stages: []Phase{Failed, Pending, Pending},
					message: "vision-run1-train failed and is not retried: the policy allows 2 attempts"},
				{name: "looked at again", phase: Failed, stages: []Phase{Failed, Pending, Pending}, message: "not retried"},
			})
		})
	}
}

// TestRunPollsUntilTheRunEnds: Run steps every Poll until the run ends, retries a
// step's error five times in a row, and stops when its context ends.
func TestRunPollsUntilTheRunEnds(t *testing.T) {
	tests := []struct {
		name string
		// listErrors is how many times listing Jobs fails first.
		listErrors int
		cancelAt   time.Duration // 0: never
		want       Phase
		wantErr    string
		// took is how long Run took: one poll per step after the first.
		took time.Duration
	}{
		{"a Job that completes", 0, 0, Succeeded, "", time.Second},
		{"five errors in a row", 5, 0, Succeeded, "", 6 * time.Second},
		{"six errors in a row", 6, 0, Running, "the API server is restarting", 5 * time.Second},
		{"stopped", 0, 1500 * time.Millisecond, Running, "context canceled", 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			c := fake.NewClientset()
			failures := 0
			c.PrependReactor("list", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
				if failures < tt.listErrors {
					failures++
					return true, nil, errors.New("the API server is restarting")
				}
				return false, nil, nil
			})
			c.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
				// The Job controller, quick: the Job has completed by the next step.
				j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
				if tt.cancelAt == 0 {
					j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
				}
				return false, nil, nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelAt > 0 {
				time.AfterFunc(tt.cancelAt, cancel)
			}
			start := time.Now()
			st, err := (&Driver{Client: c, Chains: chains{}, Poll: time.Second}).Run(ctx, trainOnly(t), "run1")
			if st.Phase != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: Run = %s, %v; want %s, an error containing %q", tt.name, st.Phase, err, tt.want, tt.wantErr)
			}
			if took := time.Since(start); took != tt.took {
				t.Errorf("%s: Run took %s, want %s", tt.name, took, tt.took)
			}
		})
	}
}
