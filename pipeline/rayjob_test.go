package pipeline

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/policy"
)

// trainAsRayJob trains as a RayJob of a head and a worker group, then compresses
// as a Job.
const trainAsRayJob = `
name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: train
    kind: training
    rayjob:
      entrypoint: python train.py
      rayClusterSpec:
        headGroupSpec:
          template: {spec: {containers: [{name: ray-head, image: "rayproject/ray:2.40"}]}}
        workerGroupSpecs:
          - groupName: workers
            replicas: 2
            template: {spec: {containers: [{name: ray-worker, image: "rayproject/ray:2.40"}]}}
  - name: compress
    kind: compression
    job: {spec: {containers: [{name: q, image: trt}]}}
`

func rayJobs() *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{RayJobGVR: "RayJobList"})
}

// rayJobEnds plays KubeRay's operator: the RayJob name ends with the deployment
// and job statuses.
func rayJobEnds(t *testing.T, dyn *dynamicfake.FakeDynamicClient, name, deployment, job string) {
	t.Helper()
	rc := dyn.Resource(RayJobGVR).Namespace("ml")
	u, err := rc.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedStringMap(u.Object, map[string]string{"jobDeploymentStatus": deployment, "jobStatus": job}, "status"); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestARayJobStage(t *testing.T) {
	def, err := Parse([]byte(trainAsRayJob))
	if err != nil {
		t.Fatal(err)
	}
	kube, dyn := fake.NewClientset(), rayJobs()
	states := chains{}
	d := &Driver{Client: kube, RayJobs: dyn.Resource(RayJobGVR), Chains: states, Pods: policy.Pods{}}
	rc := dyn.Resource(RayJobGVR).Namespace("ml")

	if st := stepOnce(t, d, def); st.Phase != Running || st.Stages[0].Object != "vision-r1-train" {
		t.Fatalf("first step: %s %+v, want running on vision-r1-train", st.Phase, st.Stages[0])
	}
	rj, err := rc.Get(context.Background(), "vision-r1-train", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the stage's RayJob: %v", err)
	}
	if l := rj.GetLabels(); l[failure.LabelStage] != "train" || l[LabelRun] != "r1" || l[failure.LabelKind] != "training" || l[failure.LabelManaged] != "true" {
		t.Errorf("labels %v: want the stage's", l)
	}
	if e, _, _ := unstructured.NestedString(rj.Object, "spec", "entrypoint"); e != "python train.py" {
		t.Errorf("entrypoint %q, want the stage's", e)
	}
	templates, err := rayTemplates(rj.Object["spec"].(map[string]any))
	if err != nil || len(templates) != 2 {
		t.Fatalf("the RayJob's templates: %d, %v; want the head's and the workers'", len(templates), err)
	}
	for _, at := range templates {
		env := at.tmpl.Spec.Containers[0].Env
		if len(env) != 2 || env[1].Name != "ARTIFACT_OUT" || env[1].Value != "s3://m/r1/train" {
			t.Errorf("%s env %v: want ARTIFACT_IN and ARTIFACT_OUT", at.field, env)
		}
	}

	// A failed Ray job fails the RayJob ("Complete" with the job FAILED, as older
	// KubeRay reports it, too): the stage waits for remediation.
	rayJobEnds(t, dyn, "vision-r1-train", "Complete", "FAILED")
	states["vision-r1-train"] = [2]string{"abandoned", "no fix"}
	if st := stepOnce(t, d, def); st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "not retried: no fix") {
		t.Fatalf("after the failure: %s %+v; want failed, not retried", st.Phase, st.Stages[0])
	}
	states["vision-r1-train"] = [2]string{"submitted", ""}
	attempt := rj.DeepCopy()
	attempt.SetName("vision-r1-train-af2")
	attempt.SetResourceVersion("")
	l := attempt.GetLabels()
	l[failure.LabelAttempt] = "2"
	attempt.SetLabels(l)
	if _, err := rc.Create(context.Background(), attempt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rayJobEnds(t, dyn, "vision-r1-train-af2", "Complete", "SUCCEEDED")
	st := stepOnce(t, d, def)
	if st.Stages[0].Phase != Succeeded || st.Stages[0].Object != "vision-r1-train-af2" || st.Stages[1].Phase != Running {
		t.Fatalf("after the attempt succeeded: %+v", st.Stages)
	}
}

func TestARayJobStageIsRefused(t *testing.T) {
	def, err := Parse([]byte(trainAsRayJob))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("without RayJob enabled", func(t *testing.T) {
		st := stepOnce(t, &Driver{Client: fake.NewClientset(), Chains: chains{}}, def)
		if st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "stages[0].rayjob: RayJob stages run only") {
			t.Errorf("Step = %s %+v", st.Phase, st.Stages[0])
		}
	})
	t.Run("names KubeRay would refuse", func(t *testing.T) {
		def, err := Parse([]byte(strings.Replace(trainAsRayJob, "name: vision", "name: vision-transformer-large", 1)))
		if err != nil {
			t.Fatal(err)
		}
		dyn := rayJobs()
		st, err := (&Driver{Client: fake.NewClientset(), RayJobs: dyn.Resource(RayJobGVR), Chains: chains{}}).Step(context.Background(), def,
			"a-run-of-twenty-char")
		if err != nil || st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "KubeRay accepts 47") {
			t.Errorf("Step = %s %+v (%v)", st.Phase, st.Stages[0], err)
		}
		if n := len(dyn.Actions()); n != 0 {
			t.Errorf("%d RayJob actions, want none", n)
		}
	})
	t.Run("the pod policy holds the submitter", func(t *testing.T) {
		bad := strings.Replace(trainAsRayJob, "      entrypoint: python train.py\n",
			"      entrypoint: python train.py\n      submitterPodTemplate: {spec: {hostPID: true, containers: [{name: s, image: ray}]}}\n", 1)
		def, err := Parse([]byte(bad))
		if err != nil {
			t.Fatal(err)
		}
		dyn := rayJobs()
		st := stepOnce(t, &Driver{Client: fake.NewClientset(), RayJobs: dyn.Resource(RayJobGVR), Chains: chains{}}, def)
		if st.Phase != Failed || !strings.Contains(st.Stages[0].Message, "stages[0].rayjob.submitterPodTemplate.spec.hostPID") {
			t.Errorf("Step = %s %+v", st.Phase, st.Stages[0])
		}
		if n := len(dyn.Actions()); n != 0 {
			t.Errorf("%d RayJob actions, want none", n)
		}
	})
	for _, tt := range []struct{ name, from, to, want string }{
		{"no entrypoint", "      entrypoint: python train.py\n", "", "stages[0].rayjob.entrypoint: required"},
		{"on an existing cluster", "      entrypoint: python train.py\n", "      entrypoint: x\n      clusterSelector: {ray.io/cluster: shared}\n",
			"stages[0].rayjob.clusterSelector"},
		{"a worker group without containers", "            template: {spec: {containers: [{name: ray-worker, image: \"rayproject/ray:2.40\"}]}}\n",
			"            template: {spec: {}}\n", "stages[0].rayjob.rayClusterSpec.workerGroupSpecs[0].template.spec.containers: at least one"},
		{"no head", "        headGroupSpec:\n          template: {spec: {containers: [{name: ray-head, image: \"rayproject/ray:2.40\"}]}}\n", "",
			"stages[0].rayjob.rayClusterSpec.headGroupSpec: required"},
		{"a worker group that is not an object", "          - groupName: workers\n", "          - 3\n          - groupName: workers\n",
			"workerGroupSpecs[0]: want an object"},
	} {
		if _, err := Parse([]byte(strings.Replace(trainAsRayJob, tt.from, tt.to, 1))); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse = %v, want %q", tt.name, err, tt.want)
		}
	}
}
