package remediate

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/autofix/autofix/failure"
)

// failedJob is a Job as the API server returns it: selector and controller labels set.
func failedJob() *batchv1.Job {
	uid := "0b1c"
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "llm-ft", Namespace: "ml", UID: "0b1c",
			Labels: map[string]string{"team": "nlp", batchv1.ControllerUidLabel: uid, batchv1.JobNameLabel: "llm-ft"},
			Annotations: map[string]string{
				failure.AnnotationParams:                           `{"micro_batch_size":{"env":"MBS"},"precision":{"arg":"--precision"}}`,
				failure.AnnotationTunables:                         `{"micro_batch_size":{"role":"micro_batch","min":1,"max":64}}`,
				"kubectl.kubernetes.io/last-applied-configuration": "{}",
			}},
		Spec: batchv1.JobSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: uid}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{batchv1.ControllerUidLabel: uid, batchv1.JobNameLabel: "llm-ft", "controller-uid": uid, "team": "nlp"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					NodeSelector: map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"},
					Containers: []corev1.Container{{Name: "train", Image: "train:1",
						Args: []string{"--precision", "fp32", "--epochs=3"},
						Env:  []corev1.EnvVar{{Name: "MBS", Value: "16"}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("64Gi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Gi"), ResourceGPU: resource.MustParse("1")}}}}}},
		},
		Status: batchv1.JobStatus{Failed: 1},
	}
}

func submission() *Submission {
	return &Submission{Namespace: "ml", FailedJob: "llm-ft", Name: "llm-ft-af2", Chain: "ml/llm-ft", Original: "llm-ft", Attempt: 2,
		Remediation: "k8s-job-0b1c", FailedUID: "0b1c", Option: failure.Option{
			Resources:  failure.Resources{CPUMillis: 8000, MemoryBytes: 96 << 30, GPU: 2, GPUType: "nvidia-h100-80gb"},
			Params:     map[string]string{"micro_batch_size": "8", "precision": "bf16"},
			AvoidNodes: []string{"gpu-node-3"}, DeadlineSeconds: 7200, Changes: []string{"memory 64Gi -> 96Gi"}}}
}

func TestNewAttempt(t *testing.T) {
	s := NewSubmitter(fake.NewClientset(), SubmitterOptions{})
	j, err := s.NewAttempt(failedJob(), submission())
	if err != nil {
		t.Fatal(err)
	}
	if j.Spec.Selector != nil || j.Labels[batchv1.ControllerUidLabel] != "" || j.Spec.Template.Labels[batchv1.ControllerUidLabel] != "" ||
		j.Spec.Template.Labels["controller-uid"] != "" || j.Spec.Template.Labels[batchv1.JobNameLabel] != "" {
		t.Errorf("server-generated fields kept: selector %v, labels %v, template labels %v", j.Spec.Selector, j.Labels, j.Spec.Template.Labels)
	}
	if j.Name != "llm-ft-af2" || j.Labels["team"] != "nlp" || j.Labels[failure.LabelAttempt] != "2" || j.Labels[failure.LabelOriginal] != "llm-ft" ||
		j.Spec.Template.Labels[failure.LabelAttempt] != "2" || j.Annotations[failure.AnnotationChain] != "ml/llm-ft" ||
		j.Annotations[failure.AnnotationRemediation] != "k8s-job-0b1c" || j.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" {
		t.Errorf("metadata: labels %v annotations %v", j.Labels, j.Annotations)
	}
	c := j.Spec.Template.Spec.Containers[0]
	mem, gpu := c.Resources.Limits[corev1.ResourceMemory], c.Resources.Limits[ResourceGPU]
	if mem.Value() != 96<<30 || gpu.Value() != 2 || c.Resources.Requests.Memory().Value() != 96<<30 {
		t.Errorf("resources = %+v, want 96Gi and 2 GPUs, requests = limits", c.Resources)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("a CPU limit was added where the job had none")
	}
	if got := j.Spec.Template.Spec.NodeSelector["nvidia.com/gpu.product"]; got != "nvidia-h100-80gb" {
		t.Errorf("GPU node selector = %q", got)
	}
	if c.Env[0].Value != "8" || c.Args[1] != "bf16" || c.Args[2] != "--epochs=3" {
		t.Errorf("params: env %v args %v, want MBS=8 and --precision bf16", c.Env, c.Args)
	}
	aff := j.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
	if aff.Key != corev1.LabelHostname || aff.Operator != corev1.NodeSelectorOpNotIn || aff.Values[0] != "gpu-node-3" {
		t.Errorf("node affinity = %+v, want NotIn gpu-node-3", aff)
	}
	if j.Spec.ActiveDeadlineSeconds == nil || *j.Spec.ActiveDeadlineSeconds != 7200 {
		t.Errorf("activeDeadlineSeconds = %v, want 7200", j.Spec.ActiveDeadlineSeconds)
	}
	if failedJob().Spec.Template.Spec.Containers[0].Env[0].Value != "16" {
		t.Error("the failed job was modified")
	}
}

func TestNewAttemptRefusesUndeclaredParams(t *testing.T) {
	sub := submission()
	sub.Option.Params["learning_rate"] = "1e-4"
	if _, err := NewSubmitter(fake.NewClientset(), SubmitterOptions{}).NewAttempt(failedJob(), sub); err == nil {
		t.Error("NewAttempt changed a parameter the job declares no way to pass")
	}
}

func TestSubmitIsIdempotent(t *testing.T) {
	client := fake.NewClientset(failedJob())
	s := NewSubmitter(client, SubmitterOptions{})
	for range 2 {
		if err := s.Submit(context.Background(), submission()); err != nil {
			t.Fatal(err)
		}
	}
	creates := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d creates for two submissions of one attempt, want 1", creates)
	}
}

func TestJobEvent(t *testing.T) {
	job := failedJob()
	job.Labels[failure.LabelKind] = "training"
	cond := batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded,
		Message: "Job has reached the specified backoff limit"}
	job.Status.Conditions = []batchv1.JobCondition{cond}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "llm-ft-x", Namespace: "ml"},
		Spec: corev1.PodSpec{NodeName: "gpu-node-3", Containers: job.Spec.Template.Spec.Containers},
		Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: "train",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137,
				StartedAt: metav1.Unix(1000, 0), FinishedAt: metav1.Unix(1600, 0)}}}}}}
	w := NewWatcher(fake.NewClientset(), nil, nil, WatcherOptions{LogLines: -1})
	ev := w.jobEvent(context.Background(), job, &cond, []*corev1.Pod{pod}, nil)
	if ev.ID != "k8s-job-0b1c" || ev.Job.Kind != failure.Training || ev.Job.Template != "llm-ft" || ev.Job.Attempt != 1 {
		t.Errorf("event job = %+v", ev.Job)
	}
	f := ev.Failure
	if f.Reason != "OOMKilled" || f.ExitCode != 137 || f.Node != "gpu-node-3" || f.DurationSeconds != 600 {
		t.Errorf("event failure = %+v, want OOMKilled 137 on gpu-node-3 after 600 s", f)
	}
	r := ev.Job.Resources
	if r.MemoryBytes != 64<<30 || r.GPU != 1 || r.GPUType != "nvidia-a100-40gb" || r.CPUMillis != 8000 || ev.Job.Params["micro_batch_size"] != "16" ||
		ev.Job.Params["precision"] != "fp32" || ev.Job.Tunables["micro_batch_size"].Max != 64 {
		t.Errorf("event resources %+v params %v tunables %v", r, ev.Job.Params, ev.Job.Tunables)
	}
	if _, err := failure.Decode(mustJSON(t, ev)); err != nil {
		t.Errorf("the event does not decode: %v", err)
	}
}

func mustJSON(t *testing.T, ev *failure.Event) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// specs is a SpecStore in memory.
type specs map[string]*batchv1.Job

func (s specs) KeepSpec(_ context.Context, job *batchv1.Job) error {
	s[string(job.UID)] = job.DeepCopy()
	return nil
}

func (s specs) Spec(_ context.Context, uid string) (*batchv1.Job, error) { return s[uid], nil }

// TestSubmitFromTheKeptSpec: a failed Job deleted before its fix was submitted is
// re-created from the spec the watcher kept; without one, the fix cannot be made; and
// a later Job of the same name is never the base of the first one's fix.
func TestSubmitFromTheKeptSpec(t *testing.T) {
	ctx := context.Background()
	sub := submission()
	sub.FailedUID = "0b1c"
	client := fake.NewClientset() // the failed Job is gone
	if err := NewSubmitter(client, SubmitterOptions{}).Submit(ctx, sub); !errors.Is(err, ErrCannotSubmit) {
		t.Fatalf("no Job and no kept spec: %v, want ErrCannotSubmit", err)
	}
	kept := specs{}
	if err := kept.KeepSpec(ctx, failedJob()); err != nil {
		t.Fatal(err)
	}
	if err := NewSubmitter(client, SubmitterOptions{Specs: kept}).Submit(ctx, sub); err != nil {
		t.Fatal(err)
	}
	j, err := client.BatchV1().Jobs("ml").Get(ctx, "llm-ft-af2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := j.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; m.Value() != 96<<30 || j.Spec.Selector != nil {
		t.Errorf("attempt from the kept spec: memory %s, selector %v; want 96Gi and no server-set selector", m.String(), j.Spec.Selector)
	}

	// Another Job took the name: it is not the base; with no spec kept, no fix.
	other := failedJob()
	other.UID = "ffff"
	other.Spec.Template.Spec.Containers[0].Image = "someone-else:9"
	client = fake.NewClientset(other)
	if err := NewSubmitter(client, SubmitterOptions{Specs: specs{}}).Submit(ctx, sub); !errors.Is(err, ErrCannotSubmit) {
		t.Errorf("a different Job of the same name: %v, want ErrCannotSubmit", err)
	}
	if err := NewSubmitter(client, SubmitterOptions{Specs: kept}).Submit(ctx, sub); err != nil {
		t.Fatal(err)
	}
	j, err = client.BatchV1().Jobs("ml").Get(ctx, "llm-ft-af2", metav1.GetOptions{})
	if err != nil || j.Spec.Template.Spec.Containers[0].Image == "someone-else:9" {
		t.Errorf("the fix was built from the other Job (%v)", err)
	}
}
