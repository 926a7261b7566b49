package main

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/service"
	"github.com/autofix/autofix/simcluster"
)

// TestServeWithTheSimulatedCluster runs serve as the README's first command does —
// no cluster, no broker, no database — and checks what its demo should show: the
// OOMs fixed by one re-submission each, the user-code failure left alone, and the
// example pipeline past a CUDA OOM in training all the way to a rolled-out deploy;
// then that a restart resumes from the cluster's file without doing anything twice.
// A candidate version of the models is evaluated in shadow all along: it changes
// none of that, and its report scores it on the demo's decisions.
func TestServeWithTheSimulatedCluster(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.Kafka.SessionTimeout = 6 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	shadowAPessimist(t, &cfg)
	stop := runServe(t, &cfg, "serve")
	ctx := context.Background()
	store, err := ledger.Open(ctx, cfg.LedgerDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })

	want := map[string]ledger.State{
		"ranker-train": ledger.PendingReview, "embeddings-refresh": ledger.PendingReview,
		"resnet50-train-nightly": ledger.Succeeded, "whisper-finetune": ledger.Succeeded, "bert-large-prune": ledger.Succeeded,
		"tokenize-shards": ledger.Succeeded, "resnet50-demo-train": ledger.Succeeded, "feature-etl": ledger.Rejected,
	}
	got := map[string]ledger.Remediation{}
	waitFor(t, "the demo's remediations to end", 90*time.Second, func() bool {
		list, err := store.List(ctx, ledger.Filter{Limit: 100})
		if err != nil {
			return false
		}
		for _, r := range list {
			if r.Event != nil {
				got[r.Event.Job.Name] = r
			}
		}
		for job, st := range want {
			if got[job].State != st {
				return false
			}
		}
		return true
	})
	for job := range want {
		if r := got[job]; r.State == ledger.Succeeded && len(r.Attempts) != 1 {
			t.Errorf("%s took %d re-submissions, want 1", job, len(r.Attempts))
		}
	}
	if r := got["feature-etl"]; r.Category != "user_code" || len(r.Attempts) != 0 {
		t.Errorf("feature-etl: %s with %d attempts, want user_code and none", r.Category, len(r.Attempts))
	}
	// The simulated cluster answers the watcher's metrics source: the failures carry
	// their peaks (an OOM its limit, a CUDA OOM all but what the error says is free),
	// and so do the outcomes of their fixes.
	if u := got["resnet50-train-nightly"].Event.Failure.Usage; u.PeakMemoryBytes != 16<<30 {
		t.Errorf("resnet50-train-nightly's failure: usage %+v, want the 16Gi limit it was killed at", u)
	}
	if u := got["bert-large-prune"].Event.Failure.Usage; u.PeakGPUMemoryBytes != 39834<<20 {
		t.Errorf("bert-large-prune's failure: usage %+v, want 39834 MiB of the 40 GB GPU", u)
	}
	history, err := store.History(ctx, []string{service.DemoNamespace + "/resnet50-train-nightly"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if h := history[service.DemoNamespace+"/resnet50-train-nightly"]; len(h) != 2 || !h[1].Succeeded || h[1].Usage.PeakMemoryBytes != 21<<30 {
		t.Errorf("resnet50-train-nightly's history: %+v; want its fix's run at its 21Gi need", h)
	}
	waitFor(t, "the demo pipeline's rollout", 60*time.Second, func() bool { return demoDeployment(t, cfg.DataDir) })
	// The same through the service's API, with the admin token of the first start.
	token, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	var run api.PipelineRunView
	waitFor(t, "the demo run to be recorded as succeeded", 30*time.Second, func() bool {
		req, _ := http.NewRequest("GET", "http://"+cfg.HTTP.Addr+"/v1/pipelines/resnet50/runs/demo", nil)
		req.Header.Set("Authorization", "Bearer "+string(token))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		run = api.PipelineRunView{}
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&run) == nil && run.Phase == "succeeded"
	})
	if len(run.Stages) != 3 || run.Stages[0].Attempts != 2 || run.Stages[2].Phase != pipeline.Succeeded {
		t.Errorf("the demo run through the API: %+v; want train (2 attempts), compress, deploy succeeded", run)
	}
	if r := got["ranker-train"]; r.State != ledger.PendingReview {
		t.Errorf("ranker-train (production namespace): %s, want pending_review", r.State)
	}
	var shadow api.ShadowReportView
	getJSON(t, "http://"+cfg.HTTP.Addr+"/v1/models/2/shadow", string(token), &shadow)
	t.Logf("shadow report: %d decisions, %d scored; log-loss %.4f (active) vs %.4f (pessimist); changes %+v", shadow.Decisions,
		shadow.Active.N, shadow.Active.LogLoss, shadow.Candidate.LogLoss, shadow.Changes)
	if shadow.Decisions < 6 || shadow.Active.N < 5 || shadow.Candidate.N != shadow.Active.N || !(shadow.Candidate.LogLoss > shadow.Active.LogLoss) {
		t.Errorf("the pessimist's shadow report: %+v; want the demo's decisions, its fixes scored, the pessimist worse", shadow)
	}
	stop()

	// The cluster as it was left: the fixes are Jobs that asked for what they needed.
	kube := openCluster(t, cfg.DataDir)
	j, err := kube.BatchV1().Jobs(service.DemoNamespace).Get(ctx, "resnet50-train-nightly-af2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := j.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; m.Cmp(resource.MustParse("21Gi")) < 0 || !complete(j) {
		t.Errorf("resnet50-train-nightly-af2 asks for %s (complete %v); want at least the 21Gi it needs, and complete", m.String(), complete(j))
	}
	j, err = kube.BatchV1().Jobs(service.DemoNamespace).Get(ctx, "bert-large-prune-af2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mb, ga := envOf(j, "MICRO_BATCH_SIZE"), envOf(j, "GRAD_ACCUM_STEPS")
	if m, _ := strconv.Atoi(mb); m >= 64 && j.Spec.Template.Spec.NodeSelector["nvidia.com/gpu.product"] == "nvidia-a100-40gb" {
		t.Errorf("bert-large-prune-af2 runs micro-batch %s x %s on the same 40 GB GPU", mb, ga)
	}

	// A restart: nothing is created again, and nothing new is decided.
	before, err := store.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := kube.BatchV1().Jobs(service.DemoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop = runServe(t, &cfg, "serve again")
	time.Sleep(3 * time.Second)
	stop()
	after, err := store.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(before, after) {
		t.Errorf("ledger before the restart %v, after %v; want the same", before, after)
	}
	kube = openCluster(t, cfg.DataDir)
	again, err := kube.BatchV1().Jobs(service.DemoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Items) != len(jobs.Items) {
		t.Errorf("%d jobs after the restart, %d before", len(again.Items), len(jobs.Items))
	}
}

func complete(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// openCluster opens the simulated cluster serve keeps in dir, without running it.
func openCluster(t *testing.T, dir string) kubernetes.Interface {
	t.Helper()
	c, err := simcluster.New(simcluster.Options{Path: filepath.Join(dir, "cluster.json")})
	if err != nil {
		t.Fatal(err)
	}
	return c.Client()
}

// demoDeployment reports whether the demo pipeline's run has rolled out its model.
func demoDeployment(t *testing.T, dir string) bool {
	d, err := openCluster(t, dir).AppsV1().Deployments(service.DemoNamespace).Get(context.Background(), "resnet50", metav1.GetOptions{})
	if err != nil {
		return false
	}
	want := *d.Spec.Replicas
	return d.Spec.Template.Annotations[pipeline.LabelRun] == service.DemoRun && d.Status.ObservedGeneration == d.Generation &&
		d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want && d.Status.UnavailableReplicas == 0
}

func memoryOf(j *batchv1.Job) resource.Quantity {
	return j.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
}

func envOf(j *batchv1.Job, name string) string {
	for _, e := range j.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// shadowAPessimist registers, in the ledger of cfg (made new), models that expect
// every retry to fail as version 2, and evaluates them in shadow, as an admin would
// with the CLI.
func shadowAPessimist(t *testing.T, cfg *config.Config) {
	t.Helper()
	store, err := ledger.Open(context.Background(), cfg.LedgerDSN())
	if err != nil {
		t.Fatal(err)
	}
	_ = store.Close()
	m, err := models.Default()
	if err != nil {
		t.Fatal(err)
	}
	m.Name, m.Success = "pessimist", &models.Logistic{Weights: []float64{-3, 0}}
	data, err := m.Save()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pessimist.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"models", "register", path, "--by", "ada"}, {"models", "shadow", "2", "--by", "ada", "--reason", "a test"}} {
		if code, stdout, stderr := runCmd(t, "", append(args, "--data-dir", cfg.DataDir)...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
}

// getJSON decodes the answer to a GET of url with token into v.
func getJSON(t *testing.T, url, token string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
