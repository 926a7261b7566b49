//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/segmentio/kafka-go"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/internal/kubetest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/service"
	"github.com/autofix/autofix/simcluster"
)

// The test kubelet ends pods as the simulated cluster's ground truth says.
const (
	truthMemory      = simcluster.TruthMemory
	truthGPUBase     = simcluster.TruthGPUBase
	truthGPUSample   = simcluster.TruthGPUPerSample
	truthUserCode    = simcluster.TruthUserCode
	truthPreemptedAt = simcluster.TruthPreemptedAt
	truthEvicted     = simcluster.TruthEvicted
	truthImage       = simcluster.TruthImageMissing
	truthCrash       = simcluster.TruthCrash
)

var truth = simcluster.GroundTruth([]failure.GPUModel{{Name: "nvidia-a100-40gb", MemoryGiB: 40}}, "nvidia.com/gpu.product")

// stack is the control plane, the test kubelet, and autofix serve acting on them.
type stack struct {
	c     *kubetest.Cluster
	store *ledger.Store
	cfg   *config.Config
}

// startStack starts the stack, autofix watching namespace ml and the others named.
func startStack(t *testing.T, others ...string) *stack {
	t.Helper()
	c := kubetest.Start(t)
	ctx := context.Background()
	namespaces := append([]string{"ml"}, others...)
	for _, ns := range namespaces {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kubetest.RunKubelet(t, c.Client, truth,
		simcluster.Node{Name: "gpu-node-1", Labels: map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"}},
		simcluster.Node{Name: "gpu-node-2", Labels: map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"}})
	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Kubernetes.Kubeconfig, cfg.Kubernetes.Namespaces, cfg.Kubernetes.LeaseNamespace = c.Kubeconfig, namespaces, "default"
	cfg.Kubernetes.PendingGrace = time.Second
	cfg.BackoffSeconds = 1
	return serveOn(t, c, &cfg)
}

// serveOn validates cfg, runs serve with it until the test ends, and opens its
// ledger: the stack of c.
func serveOn(t *testing.T, c *kubetest.Cluster, cfg *config.Config) *stack {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	runServe(t, cfg, "serve")
	store, err := ledger.Open(context.Background(), cfg.LedgerDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return &stack{c: c, store: store, cfg: cfg}
}

type jobOpts struct {
	namespace   string // default ml
	labels      map[string]string
	kind        string
	memory      string
	gpu         int
	truth       map[string]string
	env         map[string]string
	annotations map[string]string
}

func (s *stack) createJob(t *testing.T, name string, o jobOpts) *batchv1.Job {
	t.Helper()
	zero := int32(0)
	c := corev1.Container{Name: "main", Image: "registry.local/" + name + ":1.0",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(o.memory)},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse(o.memory)}}}
	for k, v := range o.env {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
	}
	spec := corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{c}}
	if o.gpu > 0 {
		q := resource.MustParse(strconv.Itoa(o.gpu))
		spec.Containers[0].Resources.Limits[remediate.ResourceGPU] = q
		spec.NodeSelector = map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"}
	}
	if o.namespace == "" {
		o.namespace = "ml"
	}
	labels := map[string]string{failure.LabelKind: o.kind}
	for k, v := range o.labels {
		labels[k] = v
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.namespace, Labels: labels, Annotations: o.annotations},
		Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: o.truth}, Spec: spec}},
	}
	created, err := s.c.Client.BatchV1().Jobs(o.namespace).Create(context.Background(), job, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// remediation waits for the remediation of the failure of job to reach one of states.
func (s *stack) remediation(t *testing.T, job *batchv1.Job, within time.Duration, states ...ledger.State) ledger.Remediation {
	t.Helper()
	id := remediate.JobEventID(job)
	var r ledger.Remediation
	waitFor(t, fmt.Sprintf("remediation of %s in %v", job.Name, states), within, func() bool {
		var err error
		r, err = s.store.Get(context.Background(), id)
		if err != nil {
			return false
		}
		for _, st := range states {
			if r.State == st {
				return true
			}
		}
		return false
	})
	return r
}

func (s *stack) job(t *testing.T, name string) *batchv1.Job {
	t.Helper()
	var j *batchv1.Job
	waitFor(t, "job "+name, 60*time.Second, func() bool {
		var err error
		j, err = s.c.Client.BatchV1().Jobs("ml").Get(context.Background(), name, metav1.GetOptions{})
		return err == nil
	})
	return j
}

func TestIntegrationKubernetes(t *testing.T) {
	s := startStack(t)

	t.Run("OOMKilled training job is re-submitted once with more memory and succeeds", func(t *testing.T) {
		failed := s.createJob(t, "resnet-train", jobOpts{kind: "training", memory: "16Gi", truth: map[string]string{truthMemory: "20Gi"}})
		r := s.remediation(t, failed, 90*time.Second, ledger.Succeeded)
		if r.Category != "oom_memory" || len(r.Attempts) != 1 {
			t.Fatalf("remediation: %s, %d attempts; want oom_memory with one attempt", r.Category, len(r.Attempts))
		}
		j := s.job(t, "resnet-train-af2")
		if m := memoryOf(j); m.Cmp(resource.MustParse("16Gi")) <= 0 {
			t.Errorf("attempt 2 asks for %s, want more than 16Gi", m.String())
		}
		if j.Labels[failure.LabelOriginal] != "resnet-train" || j.Labels[failure.LabelAttempt] != "2" ||
			j.Annotations[failure.AnnotationRemediation] != r.EventID || j.Annotations[failure.AnnotationChain] != "ml/resnet-train" {
			t.Errorf("attempt 2 labels %v annotations %v do not link the chain", j.Labels, j.Annotations)
		}
		if j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] != string(j.UID) {
			t.Errorf("attempt 2 selector %v: want the server's own, for its uid %s", j.Spec.Selector, j.UID)
		}
		if _, err := s.c.Client.BatchV1().Jobs("ml").Get(context.Background(), "resnet-train-af3", metav1.GetOptions{}); err == nil {
			t.Error("a third attempt exists: the fix took more than one re-submission")
		}
	})

	t.Run("CUDA-OOM compression job gets a smaller micro-batch with the same global batch", func(t *testing.T) {
		failed := s.createJob(t, "prune-resnet", jobOpts{kind: "compression", memory: "32Gi", gpu: 1,
			truth: map[string]string{truthGPUBase: "10Gi", truthGPUSample: "512Mi"},
			env:   map[string]string{"MICRO_BATCH_SIZE": "64", "GRAD_ACCUM_STEPS": "1"},
			annotations: map[string]string{
				failure.AnnotationTunables: `{"micro_batch_size":{"role":"micro_batch","min":1,"max":512},"grad_accum_steps":{"role":"grad_accum","min":1,"max":64}}`,
				failure.AnnotationParams:   `{"micro_batch_size":{"env":"MICRO_BATCH_SIZE"},"grad_accum_steps":{"env":"GRAD_ACCUM_STEPS"}}`,
			}})
		r := s.remediation(t, failed, 90*time.Second, ledger.Succeeded)
		if r.Category != "oom_gpu" {
			t.Fatalf("category %s, want oom_gpu", r.Category)
		}
		j := s.job(t, "prune-resnet-af2")
		mb, _ := strconv.Atoi(envOf(j, "MICRO_BATCH_SIZE"))
		ga, _ := strconv.Atoi(envOf(j, "GRAD_ACCUM_STEPS"))
		if mb >= 64 || mb*ga != 64 {
			t.Errorf("attempt 2 runs micro-batch %d x accumulation %d; want a smaller micro-batch and the global batch 64 kept", mb, ga)
		}
	})

	t.Run("a user-code failure is not retried", func(t *testing.T) {
		failed := s.createJob(t, "etl-bad", jobOpts{kind: "batch", memory: "4Gi", truth: map[string]string{truthUserCode: "true"}})
		r := s.remediation(t, failed, 90*time.Second, ledger.Rejected)
		if r.Category != "user_code" || len(r.Attempts) != 0 {
			t.Errorf("remediation: %s with %d attempts, want user_code and none", r.Category, len(r.Attempts))
		}
		time.Sleep(2 * time.Second)
		if _, err := s.c.Client.BatchV1().Jobs("ml").Get(context.Background(), "etl-bad-af2", metav1.GetOptions{}); err == nil {
			t.Error("etl-bad was re-submitted")
		}
	})

	t.Run("a preemption between two OOMs does not reset the memory escalation", func(t *testing.T) {
		s.createJob(t, "bert-train", jobOpts{kind: "training", memory: "16Gi",
			truth: map[string]string{truthMemory: "60Gi", truthPreemptedAt: "2"}})
		a2 := s.job(t, "bert-train-af2") // after the first OOM
		a3 := s.job(t, "bert-train-af3") // after the preemption of attempt 2
		a4 := s.job(t, "bert-train-af4") // after attempt 3 ran out of memory again
		m2, m3, m4 := memoryOf(a2), memoryOf(a3), memoryOf(a4)
		if m2.Cmp(resource.MustParse("16Gi")) <= 0 || m3.Cmp(m2) < 0 || m4.Cmp(m3) <= 0 {
			t.Errorf("memory by attempt: 16Gi, %s, %s (preempted before), %s; want it to grow and never fall back", m2.String(), m3.String(), m4.String())
		}
		r3, err := s.store.Get(context.Background(), remediate.JobEventID(a2))
		if err != nil || r3.Category != "preempted" {
			t.Errorf("attempt 2's failure: %v %s, want preempted", err, r3.Category)
		}
	})

	t.Run("an evicted pod and an image that cannot be pulled become events", func(t *testing.T) {
		evicted := s.createJob(t, "tokenize", jobOpts{kind: "batch", memory: "4Gi", truth: map[string]string{truthEvicted: "true"}})
		r := s.remediation(t, evicted, 90*time.Second, ledger.Approved, ledger.Submitted, ledger.Succeeded, ledger.PendingReview, ledger.Rejected)
		if r.Event.Failure.Reason != "Evicted" || !strings.Contains(r.Event.Failure.Message, "ephemeral-storage") {
			t.Errorf("eviction event failure = %+v", r.Event.Failure)
		}
		stuck := s.createJob(t, "quantize", jobOpts{kind: "compression", memory: "4Gi", truth: map[string]string{truthImage: "true"}})
		var got ledger.Remediation
		waitFor(t, "an image-pull event for quantize", 60*time.Second, func() bool {
			found := false
			_ = s.store.Each(context.Background(), func(r ledger.Remediation) error {
				if r.JobName == stuck.Name && r.Event != nil && r.Event.Failure.Reason == "ImagePullBackOff" {
					got, found = r, true
				}
				return nil
			})
			return found
		})
		if got.Category != "image_pull" {
			t.Errorf("image pull failure classified %s, want image_pull", got.Category)
		}
	})

	t.Run("a failed job deleted at once by its TTL is still reported, and fixed from the spec the watcher kept", func(t *testing.T) {
		zero := int32(0)
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "ttl-train", Namespace: "ml", Labels: map[string]string{failure.LabelKind: "training"}},
			Spec: batchv1.JobSpec{BackoffLimit: &zero, TTLSecondsAfterFinished: &zero, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{truthMemory: "9Gi"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main", Image: "t:1",
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}}}}}}}
		created, err := s.c.Client.BatchV1().Jobs("ml").Create(context.Background(), job, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := s.remediation(t, created, 90*time.Second, ledger.Succeeded, ledger.Failed, ledger.Abandoned, ledger.PendingReview, ledger.Rejected)
		if r.State != ledger.Succeeded || len(r.Attempts) != 1 || r.Attempts[0].JobName != "ttl-train-af2" {
			t.Errorf("remediation of the deleted job: %s (%s, failure %s), attempts %+v; want ttl-train-af2 submitted from the kept spec, and succeeded",
				r.State, r.Category, r.Event.Failure.Reason, r.Attempts)
		}
	})

	t.Run("a crash-looping rollout is a deployment failure", func(t *testing.T) {
		one := int32(1)
		deadline := int32(3)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "resnet-serve", Namespace: "ml", Labels: map[string]string{"app": "resnet-serve"}},
			Spec: appsv1.DeploymentSpec{Replicas: &one, ProgressDeadlineSeconds: &deadline,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "resnet-serve"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "resnet-serve"},
					Annotations: map[string]string{truthCrash: "true"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "registry.local/triton:24.01",
						Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}}}}}}}
		if _, err := s.c.Client.AppsV1().Deployments("ml").Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var reasons []string
		waitFor(t, "deployment failure events", 90*time.Second, func() bool {
			reasons = reasons[:0]
			_ = s.store.Each(context.Background(), func(r ledger.Remediation) error {
				if r.JobName == "resnet-serve" && r.Event != nil {
					if r.Event.Job.Kind != "deployment" {
						t.Errorf("event %s has kind %s, want deployment", r.EventID, r.Event.Job.Kind)
					}
					reasons = append(reasons, r.Event.Failure.Reason)
					if strings.HasSuffix(r.EventID, "-crashloop") {
						reasons = append(reasons, "CrashLoopBackOff")
						if !strings.Contains(r.Event.Failure.Message, "FileNotFoundError") {
							t.Errorf("the crash loop's event lacks the container's own error: %+v", r.Event.Failure)
						}
					}
				}
				return nil
			})
			return slices.Contains(reasons, "ProgressDeadlineExceeded") && slices.Contains(reasons, "CrashLoopBackOff")
		})
	})

	t.Run("autofix watch publishes a failed job's event", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		brokers := []string{s.cfg.Kafka.EmbeddedAddr}
		if err := ingest.EnsureTopics(ctx, brokers, ingest.Security{}, ingest.Topic{Name: "watched", Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml2"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			root := newRootCmd()
			root.SetArgs([]string{"watch", "--kubeconfig", s.c.Kubeconfig, "--brokers", brokers[0], "--topic", "watched", "--namespaces", "ml2"})
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			done <- root.ExecuteContext(ctx)
		}()
		zero := int32(0)
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "vit-train", Namespace: "ml2"},
			Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{truthMemory: "9Gi"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main", Image: "vit:1",
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}}}}}}}
		created, err := s.c.Client.BatchV1().Jobs("ml2").Create(ctx, job, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "watched", MaxWait: 500 * time.Millisecond})
		defer func() { _ = r.Close() }()
		rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
		defer rcancel()
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("no event on the topic: %v", err)
		}
		ev, err := failure.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ID != remediate.JobEventID(created) || ev.Failure.Reason != "OOMKilled" || ev.Job.Resources.MemoryBytes != 8<<30 {
			t.Errorf("event %s: %+v, %+v", ev.ID, ev.Failure, ev.Job.Resources)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})

	t.Run("a pipeline goes train -> compress -> deploy with one remediated failure, and a bad deploy rolls back", func(t *testing.T) {
		def := func(serverAnnotations string, canary ...int) *pipeline.Definition {
			c := 1
			if len(canary) > 0 {
				c = canary[0]
			}
			d, err := pipeline.Parse([]byte(`
name: vision
namespace: ml
artifacts: s3://models/vision
stages:
  - name: train
    kind: training
    job:
      metadata: {annotations: {"` + truthMemory + `": "10Gi"}}
      spec: {containers: [{name: train, image: "pytorch:24.05", resources: {requests: {cpu: "4", memory: 8Gi}, limits: {memory: 8Gi}}}]}
  - name: compress
    kind: compression
    job:
      spec: {containers: [{name: quantize, image: "tensorrt:24.05", command: [trtexec], args: ["--int8"], resources: {limits: {memory: 8Gi}}}]}
  - name: deploy
    kind: deployment
    deploy:
      replicas: 2
      canary: ` + strconv.Itoa(c) + `
      progressDeadlineSeconds: 6
      template:
        metadata: {annotations: {` + serverAnnotations + `}}
        spec: {containers: [{name: triton, image: "tritonserver:24.05", resources: {limits: {memory: 8Gi}}}]}
`))
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		d := &pipeline.Driver{Client: s.c.Client, Chains: service.LedgerChains(s.store), Poll: 200 * time.Millisecond}
		// The driver is interrupted mid-pipeline and started again.
		short, stop := context.WithTimeout(ctx, 1500*time.Millisecond)
		if _, err := d.Run(short, def(""), "run1"); err == nil {
			t.Log("run1 finished within the interruption window")
		}
		stop()
		st, err := d.Run(ctx, def(""), "run1")
		if err != nil || st.Phase != pipeline.Succeeded {
			t.Fatalf("run1: %+v, %v", st, err)
		}
		if train := st.Stages[0]; train.Attempts != 2 || train.Object != "vision-run1-train-af2" {
			t.Errorf("train stage = %+v, want it to succeed on the remediated second attempt", train)
		}
		jobs, err := s.c.Client.BatchV1().Jobs("ml").List(ctx, metav1.ListOptions{LabelSelector: "autofix.io/run=run1"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, j := range jobs.Items {
			names = append(names, j.Name)
		}
		slices.Sort(names)
		if want := []string{"vision-run1-compress", "vision-run1-train", "vision-run1-train-af2"}; !slices.Equal(names, want) {
			t.Errorf("run1's jobs = %v, want %v: a stage lost or started twice across the restart", names, want)
		}
		compress, _ := s.c.Client.BatchV1().Jobs("ml").Get(ctx, "vision-run1-compress", metav1.GetOptions{})
		if envOf(compress, "ARTIFACT_IN") != "s3://models/vision/run1/train" {
			t.Errorf("compress reads %q, want the train stage's output", envOf(compress, "ARTIFACT_IN"))
		}
		stable, err := s.c.Client.AppsV1().Deployments("ml").Get(ctx, "vision", metav1.GetOptions{})
		if err != nil || stable.Spec.Template.Annotations[pipeline.LabelRun] != "run1" {
			t.Fatalf("stable deployment after run1: %v %v", err, stable.Spec.Template.Annotations)
		}

		// A restarted driver reports the finished run and starts nothing.
		again, err := d.Run(ctx, def(""), "run1")
		if err != nil || again.Phase != pipeline.Succeeded {
			t.Errorf("run1 again: %+v %v", again, err)
		}

		// run2's server crashes: the canary never becomes ready, the stable
		// deployment keeps serving run1, and the stage fails saying so.
		st, err = d.Run(ctx, def(`"`+truthCrash+`": "true"`), "run2")
		if err != nil || st.Phase != pipeline.Failed {
			t.Fatalf("run2: %+v, %v", st, err)
		}
		if msg := st.Stages[2].Message; !strings.Contains(msg, "canary") || !strings.Contains(msg, "stable deployment stays") {
			t.Errorf("run2 deploy stage message = %q", msg)
		}
		stable, err = s.c.Client.AppsV1().Deployments("ml").Get(ctx, "vision", metav1.GetOptions{})
		if err != nil || stable.Spec.Template.Annotations[pipeline.LabelRun] != "run1" {
			t.Errorf("stable deployment after the bad run2: %v %v, want run1's", err, stable.Spec.Template.Annotations)
		}
		if _, err := s.c.Client.AppsV1().Deployments("ml").Get(ctx, "vision-canary", metav1.GetOptions{}); err == nil {
			t.Error("the failed canary was left running")
		}

		// run3 rolls out without a canary and crashes: the rollout is undone.
		st, err = d.Run(ctx, def(`"`+truthCrash+`": "true"`, 0), "run3")
		if err != nil || st.Phase != pipeline.Failed || !strings.Contains(st.Stages[2].Message, "rolled back to revision") {
			t.Fatalf("run3: %+v, %v; want the deploy stage failed and rolled back", st, err)
		}
		waitFor(t, "the stable deployment back on run1's model", 30*time.Second, func() bool {
			stable, err := s.c.Client.AppsV1().Deployments("ml").Get(ctx, "vision", metav1.GetOptions{})
			return err == nil && stable.Spec.Template.Annotations[pipeline.LabelRun] == "run1" && stable.Status.AvailableReplicas == 2
		})

		// run4 through the service: POST /v1/pipelines, driven by serve, its end
		// recorded, its stages shown by GET.
		token, err := os.ReadFile(filepath.Join(s.cfg.DataDir, "admin-token"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(map[string]any{"definition": def(""), "run": "run4"})
		if err != nil {
			t.Fatal(err)
		}
		base := "http://" + s.cfg.HTTP.Addr + "/v1/pipelines"
		req, _ := http.NewRequest("POST", base, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+string(token))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST /v1/pipelines: %d", resp.StatusCode)
		}
		var run api.PipelineRunView
		waitFor(t, "run4 to end through the service", 3*time.Minute, func() bool {
			req, _ := http.NewRequest("GET", base+"/vision/runs/run4", nil)
			req.Header.Set("Authorization", "Bearer "+string(token))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer func() { _ = resp.Body.Close() }()
			run = api.PipelineRunView{}
			return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&run) == nil && run.Phase != "running"
		})
		if run.Phase != "succeeded" || len(run.Stages) != 3 || run.Stages[0].Attempts != 2 {
			t.Errorf("run4 through the service: %+v; want succeeded, train remediated once", run)
		}
		stable, err = s.c.Client.AppsV1().Deployments("ml").Get(ctx, "vision", metav1.GetOptions{})
		if err != nil || stable.Spec.Template.Annotations[pipeline.LabelRun] != "run4" {
			t.Errorf("stable deployment after run4: %v %v", err, stable.Spec.Template.Annotations)
		}
	})

	t.Run("the manifests in deploy/ are accepted by the API server", func(t *testing.T) {
		if _, err := s.c.Client.CoreV1().Namespaces().Create(context.Background(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "autofix"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		out, err := s.c.Kubectl("apply", "--dry-run=server", "-k", "../../deploy/overlays/example")
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "deployment.apps/autofix") {
			t.Errorf("dry run did not include the Deployment:\n%s", out)
		}
	})
}
