package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	jobsetfake "sigs.k8s.io/jobset/client-go/clientset/versioned/fake"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/policy"
)

// trainAsJobSet trains as a JobSet of a driver and two workers, then compresses as
// a Job.
const trainAsJobSet = `
name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: train
    kind: training
    maxAttempts: 2
    jobset:
      replicatedJobs:
        - name: driver
          template: {spec: {template: {spec: {containers: [{name: train, image: pytorch}]}}}}
        - name: workers
          replicas: 2
          template: {spec: {backoffLimit: 3, template: {spec: {restartPolicy: OnFailure, containers: [{name: train, image: pytorch}]}}}}
  - name: compress
    kind: compression
    job: {spec: {containers: [{name: q, image: trt}]}}
`

// jobSets is a fake JobSet clientset. NewClientset's field management has no
// schema for JobSets (it cannot create one); the simple one needs none.
func jobSets(objs ...runtime.Object) *jobsetfake.Clientset {
	return jobsetfake.NewSimpleClientset(objs...) //nolint:staticcheck // see above
}

// jobSetEnds plays the JobSet controller: the JobSet name ends with condition.
func jobSetEnds(t *testing.T, js *jobsetfake.Clientset, name string, condition jobsetapi.JobSetConditionType) {
	t.Helper()
	set, err := js.JobsetV1alpha2().JobSets("ml").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set.Status.Conditions = append(set.Status.Conditions, metav1.Condition{Type: string(condition), Status: metav1.ConditionTrue})
	if _, err := js.JobsetV1alpha2().JobSets("ml").UpdateStatus(context.Background(), set, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func stepOnce(t *testing.T, d *Driver, def *Definition) Status {
	t.Helper()
	st, err := d.Step(context.Background(), def, "r1")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func phasesOf(st Status) []Phase {
	var out []Phase
	for _, s := range st.Stages {
		out = append(out, s.Phase)
	}
	return out
}

func TestAJobSetStage(t *testing.T) {
	def, err := Parse([]byte(trainAsJobSet))
	if err != nil {
		t.Fatal(err)
	}
	kube, js := fake.NewClientset(), jobSets()
	states := chains{}
	d := &Driver{Client: kube, JobSets: js, Chains: states, Pods: policy.Pods{}}

	// The first step creates the stage's JobSet, as the stage's Job would be.
	if st := stepOnce(t, d, def); st.Phase != Running || !slices.Equal(phasesOf(st), []Phase{Running, Pending}) {
		t.Fatalf("first step: %s %v, want running [running pending]", st.Phase, phasesOf(st))
	}
	set, err := js.JobsetV1alpha2().JobSets("ml").Get(context.Background(), "vision-r1-train", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the stage's JobSet: %v", err)
	}
	for k, v := range map[string]string{failure.LabelManaged: "true", failure.LabelPipeline: "vision", LabelRun: "r1", failure.LabelStage: "train",
		failure.LabelKind: "training", failure.LabelTemplate: "vision-train", LabelMaxAttempts: "2"} {
		if set.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, set.Labels[k], v)
		}
	}
	if set.Annotations[failure.AnnotationPipelineRun] != "vision/r1" {
		t.Errorf("annotation %s = %q, want vision/r1", failure.AnnotationPipelineRun, set.Annotations[failure.AnnotationPipelineRun])
	}
	for i, rj := range set.Spec.ReplicatedJobs {
		job := rj.Template.Spec
		env := job.Template.Spec.Containers[0].Env
		if len(env) != 2 || env[0].Name != "ARTIFACT_IN" || env[1].Name != "ARTIFACT_OUT" || env[1].Value != "s3://m/r1/train" {
			t.Errorf("replicatedJobs[%d] env %v: want ARTIFACT_IN and ARTIFACT_OUT=s3://m/r1/train", i, env)
		}
		// The stage's own settings win; unset, the first failed pod fails the Job.
		wantBackoff, wantRestart := int32(0), "Never"
		if rj.Name == "workers" {
			wantBackoff, wantRestart = 3, "OnFailure"
		}
		if job.BackoffLimit == nil || *job.BackoffLimit != wantBackoff || string(job.Template.Spec.RestartPolicy) != wantRestart {
			t.Errorf("replicatedJobs[%d] (%s): backoffLimit %v, restartPolicy %s; want %d, %s", i, rj.Name, job.BackoffLimit,
				job.Template.Spec.RestartPolicy, wantBackoff, wantRestart)
		}
	}

	// It fails: the stage waits for remediation, whose attempt (a new JobSet) it follows.
	jobSetEnds(t, js, "vision-r1-train", jobsetapi.JobSetFailed)
	states["vision-r1-train"] = [2]string{"submitted", ""}
	if st := stepOnce(t, d, def); st.Phase != Running || !strings.Contains(st.Stages[0].Message, "remediating") {
		t.Fatalf("after the failure: %s, %+v; want running, remediating", st.Phase, st.Stages[0])
	}
	attempt := set.DeepCopy()
	attempt.ResourceVersion, attempt.Status = "", jobsetapi.JobSetStatus{}
	attempt.Name = "vision-r1-train-af2"
	attempt.Labels[failure.LabelAttempt], attempt.Labels[failure.LabelOriginal] = "2", "vision-r1-train"
	attempt.Annotations[failure.AnnotationRemediation] = "k8s-jobset-1"
	if _, err := js.JobsetV1alpha2().JobSets("ml").Create(context.Background(), attempt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := stepOnce(t, d, def); st.Stages[0].Object != "vision-r1-train-af2" || st.Stages[0].Attempts != 2 {
		t.Errorf("with the attempt: stage %+v, want vision-r1-train-af2, 2 attempts", st.Stages[0])
	}
	jobSetEnds(t, js, "vision-r1-train-af2", jobsetapi.JobSetCompleted)
	st := stepOnce(t, d, def)
	if !slices.Equal(phasesOf(st), []Phase{Succeeded, Running}) {
		t.Fatalf("after the attempt completed: %v, want [succeeded running]", phasesOf(st))
	}
	if _, err := kube.BatchV1().Jobs("ml").Get(context.Background(), "vision-r1-compress", metav1.GetOptions{}); err != nil {
		t.Errorf("the compress stage's Job: %v", err)
	}
}

func TestAJobSetStageIsRefused(t *testing.T) {
	def, err := Parse([]byte(trainAsJobSet))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("without JobSet enabled, nothing is created", func(t *testing.T) {
		kube := fake.NewClientset()
		st := stepOnce(t, &Driver{Client: kube, Chains: chains{}}, def)
		if st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "stages[0].jobset") {
			t.Errorf("Step = %s, %+v; want failed, naming stages[0].jobset", st.Phase, st.Stages[0])
		}
		if got := writes(kube); len(got) != 0 {
			t.Errorf("wrote %q, want nothing", got)
		}
	})
	t.Run("a JobSet labelled as the stage's that autofix did not create", func(t *testing.T) {
		js := jobSets(&jobsetapi.JobSet{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "ml",
			Labels: map[string]string{failure.LabelPipeline: "vision", LabelRun: "r1", failure.LabelStage: "train"}}})
		st := stepOnce(t, &Driver{Client: fake.NewClientset(), JobSets: js, Chains: chains{}}, def)
		if st.Phase != Failed || st.Stages[0].Object != "mine" || !strings.Contains(st.Stages[0].Message, "jobset") {
			t.Errorf("Step = %s, %+v; want failed on jobset mine", st.Phase, st.Stages[0])
		}
		for _, a := range js.Actions() {
			if a.GetVerb() != "list" {
				t.Errorf("%s %s on a JobSet autofix did not create", a.GetVerb(), a.GetResource().Resource)
			}
		}
	})
	t.Run("the pod policy holds every replicated job", func(t *testing.T) {
		bad := strings.Replace(trainAsJobSet, "restartPolicy: OnFailure,", "restartPolicy: OnFailure, hostNetwork: true,", 1)
		def, err := Parse([]byte(bad))
		if err != nil {
			t.Fatal(err)
		}
		js := jobSets()
		st := stepOnce(t, &Driver{Client: fake.NewClientset(), JobSets: js, Chains: chains{}}, def)
		if st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "stages[0].jobset.replicatedJobs[1].template.spec.template.spec.hostNetwork") {
			t.Errorf("Step = %s, %+v; want failed, naming the workers' hostNetwork", st.Phase, st.Stages[0])
		}
		if n := len(js.Actions()); n != 0 {
			t.Errorf("%d JobSet actions, want none", n)
		}
	})
}

func TestJobSetStageDefinitions(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"job and jobset", `{name: p, namespace: ml, artifacts: s3://m, stages: [{name: a, job: {spec: {containers: [{name: c}]}},
			jobset: {replicatedJobs: [{name: w, template: {spec: {template: {spec: {containers: [{name: c}]}}}}}]}}]}`, "stages[0]: want exactly one of job, jobset, rayjob, workflow and deploy"},
		{"no replicated jobs", `{name: p, namespace: ml, artifacts: s3://m, stages: [{name: a, jobset: {replicatedJobs: []}}]}`,
			"stages[0].jobset.replicatedJobs: at least one"},
		{"no containers", `{name: p, namespace: ml, artifacts: s3://m, stages: [{name: a, jobset: {replicatedJobs: [{name: w, template: {}}]}}]}`,
			"stages[0].jobset.replicatedJobs[0].template.spec.template.spec.containers: at least one"},
		{"bad name", `{name: p, namespace: ml, artifacts: s3://m, stages: [{name: a, jobset: {replicatedJobs: [{name: W_1, template: {spec: {template: {spec: {containers: [{name: c}]}}}}}]}}]}`,
			"stages[0].jobset.replicatedJobs[0].name"},
	} {
		if _, err := Parse([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse = %v, want %q", tt.name, err, tt.want)
		}
	}
}
