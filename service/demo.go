package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/examples"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/simcluster"
)

// The simulated cluster `serve` runs when it is given no cluster: a CPU node and
// GPU nodes of three models, the namespace "ml" where the demo's jobs run.
const (
	// DemoNamespace is where the demo's jobs run.
	DemoNamespace = "ml"
	// demoProdNamespace holds the demo's jobs whose fixes a person reviews (demoRule).
	demoProdNamespace = "ml-prod"
	// DemoRun is the demo's pipeline run.
	DemoRun = "demo"
)

// demoRule is the policy rule the demo adds in front of the default policy: fixes in
// the production namespace wait for a person, so the review page has work.
var demoRule = policy.Rule{Name: "demo-prod-reviewed", Namespaces: []string{demoProdNamespace}, Verdict: policy.Review}

// newSimulatedCluster is the cluster of the embedded default: its pods use the
// memory of the catalogue's GPU models, and its nodes are discovered like a real
// cluster's.
func newSimulatedCluster(cfg *config.Config, log *slog.Logger) (*simcluster.Cluster, error) {
	label := cfg.Kubernetes.GPUTypeLabel
	nodes := []simcluster.Node{{Name: "cpu-node-1"}}
	for i, model := range []string{"nvidia-a100-40gb", "nvidia-a100-80gb", "nvidia-l4"} {
		nodes = append(nodes, simcluster.Node{Name: fmt.Sprintf("gpu-node-%d", i+1), Labels: map[string]string{label: model}})
	}
	return simcluster.New(simcluster.Options{
		Path: filepath.Join(cfg.DataDir, "cluster.json"), Truth: simcluster.GroundTruth(cfg.Catalogue.GPUs, label),
		Nodes: nodes, Namespaces: []string{DemoNamespace, demoProdNamespace, cfg.Kubernetes.LeaseNamespace}, Log: log,
	})
}

// demoJob is one failing job of the demo and the truth it fails by.
type demoJob struct {
	name, kind, memory string
	namespace          string // default DemoNamespace
	cpu                string // default 4
	gpu                bool
	env                map[string]string
	truth              map[string]string
	note               string
}

var demoJobs = []demoJob{
	{name: "resnet50-train-nightly", kind: "training", memory: "16Gi", truth: map[string]string{simcluster.TruthMemory: "21Gi"},
		note: "OOMKilled: needs 21Gi, asks for 16Gi"},
	{name: "whisper-finetune", kind: "training", memory: "32Gi", truth: map[string]string{simcluster.TruthMemory: "45Gi"},
		note: "OOMKilled: needs 45Gi, asks for 32Gi"},
	{name: "bert-large-prune", kind: "compression", memory: "32Gi", gpu: true,
		env:   map[string]string{"MICRO_BATCH_SIZE": "64", "GRAD_ACCUM_STEPS": "1"},
		truth: map[string]string{simcluster.TruthGPUBase: "12Gi", simcluster.TruthGPUPerSample: "448Mi"},
		note:  "CUDA out of memory at micro-batch 64 on a 40 GB GPU"},
	{name: "ranker-train", namespace: demoProdNamespace, kind: "training", memory: "24Gi", truth: map[string]string{simcluster.TruthMemory: "30Gi"},
		note: "OOMKilled in production: needs 30Gi, asks for 24Gi; its fix waits for review"},
	{name: "embeddings-refresh", namespace: demoProdNamespace, kind: "batch", memory: "12Gi", truth: map[string]string{simcluster.TruthMemory: "14Gi"},
		note: "OOMKilled in production: needs 14Gi, asks for 12Gi; its fix waits for review"},
	{name: "tokenize-shards", kind: "batch", memory: "8Gi", truth: map[string]string{simcluster.TruthEvicted: "true"},
		note: "evicted (node disk pressure) on its first run"},
	{name: "feature-etl", kind: "batch", memory: "4Gi", truth: map[string]string{simcluster.TruthUserCode: "true"},
		note: "a TypeError in the job's own code: not retried"},
	{name: "export-onnx", kind: "compression", memory: "8Gi", truth: map[string]string{simcluster.TruthImageMissing: "true"},
		note: "its image cannot be pulled"},
}

// seedDemo creates the demo's jobs and starts its pipeline run, once: when the
// namespace has no jobs yet.
func seedDemo(ctx context.Context, kube kubernetes.Interface, pipelines *pipeline.Supervisor, log *slog.Logger) error {
	jobs, err := kube.BatchV1().Jobs(DemoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(jobs.Items) > 0 {
		return nil
	}
	def, err := demoPipeline()
	if err != nil {
		return err
	}
	if _, err := pipelines.Start(ctx, def, DemoRun, "demo"); err != nil && !errors.Is(err, ledger.ErrConflict) {
		return err
	}
	for _, d := range demoJobs {
		j := d.job()
		if _, err := kube.BatchV1().Jobs(j.Namespace).Create(ctx, j, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		log.Info("demo job created on the simulated cluster", "job", j.Namespace+"/"+j.Name, "truth", d.note)
	}
	return nil
}

func (d demoJob) job() *batchv1.Job {
	zero := int32(0)
	cpu := d.cpu
	if cpu == "" {
		cpu = "4"
	}
	c := corev1.Container{Name: "main", Image: "registry.example.com/ml/" + d.name + ":1.4",
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(d.memory)},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(d.memory)}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError}
	for _, k := range []string{"MICRO_BATCH_SIZE", "GRAD_ACCUM_STEPS"} {
		if v, ok := d.env[k]; ok {
			c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
		}
	}
	spec := corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{c}}
	ann := map[string]string{}
	if d.gpu {
		spec.Containers[0].Resources.Limits[remediate.ResourceGPU] = resource.MustParse("1")
		spec.NodeSelector = map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"}
		ann[failure.AnnotationTunables] = `{"micro_batch_size":{"role":"micro_batch","min":1,"max":512},"grad_accum_steps":{"role":"grad_accum","min":1,"max":64}}`
		ann[failure.AnnotationParams] = `{"micro_batch_size":{"env":"MICRO_BATCH_SIZE"},"grad_accum_steps":{"env":"GRAD_ACCUM_STEPS"}}`
	}
	truth := map[string]string{simcluster.TruthRunSeconds: "2"}
	for k, v := range d.truth {
		truth[k] = v
	}
	ns := d.namespace
	if ns == "" {
		ns = DemoNamespace
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: ns, Annotations: ann,
			Labels: map[string]string{failure.LabelKind: d.kind, "app.kubernetes.io/part-of": "autofix-demo"}},
		Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: truth}, Spec: spec}},
	}
}

// demoPipeline is the example pipeline with the simulated cluster's ground truth: the
// training stage runs out of GPU memory at its configured micro-batch.
func demoPipeline() (*pipeline.Definition, error) {
	def, err := pipeline.Parse(examples.Pipeline)
	if err != nil {
		return nil, err
	}
	truth := map[string]map[string]string{
		"train":    {simcluster.TruthGPUBase: "20Gi", simcluster.TruthGPUPerSample: "96Mi", simcluster.TruthRunSeconds: "3"},
		"compress": {simcluster.TruthRunSeconds: "2"},
		"deploy":   {simcluster.TruthRunSeconds: "1"},
	}
	for i := range def.Stages {
		s := &def.Stages[i]
		t := s.Job
		if s.Deploy != nil {
			t = &s.Deploy.Template
			s.Deploy.ProgressDeadlineSeconds = 60
		}
		if t.Annotations == nil {
			t.Annotations = map[string]string{}
		}
		for k, v := range truth[s.Name] {
			t.Annotations[k] = v
		}
	}
	return def, def.Validate()
}
