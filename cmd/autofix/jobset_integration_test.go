//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.yaml.in/yaml/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	jobsetclient "sigs.k8s.io/jobset/client-go/clientset/versioned"

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

// installJobSetCRD creates the real JobSet CRD, from the jobset module autofix
// builds with, and waits until it is Established and its API serves. (The
// apiextensions API is written through the dynamic client: its typed clientset is a
// module of its own, k8s.io/apiextensions-apiserver, which nothing else needs.)
func installJobSetCRD(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-json", "sigs.k8s.io/jobset").Output()
	if err != nil {
		t.Fatalf("go list -m sigs.k8s.io/jobset: %v", err)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go list -m sigs.k8s.io/jobset: %v (%s): the module is not downloaded", err, out)
	}
	data, err := os.ReadFile(filepath.Join(mod.Dir, "config", "components", "crd", "bases", "jobset.x-k8s.io_jobsets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	crds := dynamic.NewForConfigOrDie(c.Config).Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1",
		Resource: "customresourcedefinitions"})
	ctx := context.Background()
	if _, err := crds.Create(ctx, &unstructured.Unstructured{Object: doc}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the JobSet CRD (%s): %v", mod.Version, err)
	}
	waitFor(t, "the JobSet CRD Established", 30*time.Second, func() bool {
		got, err := crds.Get(ctx, "jobsets.jobset.x-k8s.io", metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	})
	js := jobsetclient.NewForConfigOrDie(c.Config)
	waitFor(t, "the JobSet API served", 30*time.Second, func() bool {
		_, err := js.JobsetV1alpha2().JobSets("default").List(ctx, metav1.ListOptions{})
		return err == nil
	})
}

// playJobSetController does what the JobSet controller does with the JobSets of ns
// that are not suspended, until the test ends: it creates each replicated job's
// Jobs (named, labelled and owned as the controller does; the real Job controller
// and the test kubelet run their pods), and writes the JobSet's Failed condition
// naming the Job that failed first, or Completed once every Job completed. (The
// real controller needs its webhooks; K8S-TESTING.md and the addons branch run it.)
func playJobSetController(t *testing.T, kube kubernetes.Interface, js jobsetclient.Interface, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			list, err := js.JobsetV1alpha2().JobSets(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range list.Items {
					reconcileJobSet(ctx, t, kube, js, &list.Items[i])
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func reconcileJobSet(ctx context.Context, t *testing.T, kube kubernetes.Interface, client jobsetclient.Interface, js *jobsetapi.JobSet) {
	if js.Status.TerminalState != "" || js.Spec.Suspend != nil && *js.Spec.Suspend {
		return
	}
	var (
		jobs      []*batchv1.Job
		firstFail *batchv1.Job
		failedAt  time.Time
		complete  int
	)
	for _, rj := range js.Spec.ReplicatedJobs {
		for i := range int(max(rj.Replicas, 1)) {
			name := fmt.Sprintf("%s-%s-%d", js.Name, rj.Name, i)
			labels := map[string]string{jobsetapi.JobSetNameKey: js.Name, jobsetapi.JobSetUIDKey: string(js.UID), jobsetapi.ReplicatedJobNameKey: rj.Name}
			spec := *rj.Template.Spec.DeepCopy()
			spec.Template.Labels = merged(spec.Template.Labels, labels)
			job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: js.Namespace, Labels: merged(rj.Template.Labels, labels),
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(js, jobsetapi.GroupVersion.WithKind("JobSet"))}}, Spec: spec}
			got, err := kube.BatchV1().Jobs(js.Namespace).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				got, err = kube.BatchV1().Jobs(js.Namespace).Create(ctx, job, metav1.CreateOptions{})
			}
			if err != nil {
				return
			}
			jobs = append(jobs, got)
			for _, c := range got.Status.Conditions {
				switch {
				case c.Status != corev1.ConditionTrue:
				case c.Type == batchv1.JobFailed && (firstFail == nil || c.LastTransitionTime.Time.Before(failedAt)):
					firstFail, failedAt = got, c.LastTransitionTime.Time
				case c.Type == batchv1.JobComplete:
					complete++
				}
			}
		}
	}
	cond := metav1.Condition{Status: metav1.ConditionTrue, LastTransitionTime: metav1.Now()}
	switch {
	case firstFail != nil:
		cond.Type, cond.Reason = string(jobsetapi.JobSetFailed), "FailedJobs"
		cond.Message = "jobset failed due to one or more job failures (first failed job: " + firstFail.Name + ")"
	case complete == len(jobs):
		cond.Type, cond.Reason, cond.Message = string(jobsetapi.JobSetCompleted), "AllJobsCompleted", "jobset completed successfully"
	default:
		return
	}
	js = js.DeepCopy()
	js.Status.Conditions = append(js.Status.Conditions, cond)
	js.Status.TerminalState = cond.Type
	if _, err := client.JobsetV1alpha2().JobSets(js.Namespace).UpdateStatus(ctx, js, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		t.Logf("the test's JobSet controller: update the status of %s: %v (it tries again)", js.Name, err)
	}
}

func merged(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// trainingJobSet is a JobSet of a driver and replicas workers whose memory limit
// is memory and whose true need is need.
func trainingJobSet(name, memory, need string, replicas int32) *jobsetapi.JobSet {
	zero := int32(0)
	rj := func(rname, image, mem string, replicas int32, truth map[string]string) jobsetapi.ReplicatedJob {
		q := resource.MustParse(mem)
		// Pods run two seconds: the API's times are whole seconds, and a pod that
		// starts and ends within one would cost nothing.
		truth = merged(truth, map[string]string{simcluster.TruthRunSeconds: "2"})
		return jobsetapi.ReplicatedJob{Name: rname, Replicas: replicas, Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{BackoffLimit: &zero,
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: truth}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "train", Image: image, Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{corev1.ResourceMemory: q}, Requests: corev1.ResourceList{corev1.ResourceMemory: q, corev1.ResourceCPU: resource.MustParse("2")}}}}}}}}}
	}
	return &jobsetapi.JobSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", Labels: map[string]string{failure.LabelKind: "training", "team": "nlp"}},
		Spec: jobsetapi.JobSetSpec{
			ReplicatedJobs: []jobsetapi.ReplicatedJob{rj("driver", "driver:1", "2Gi", 1, nil),
				rj("workers", "trainer:1", memory, replicas, map[string]string{truthMemory: need})},
			FailurePolicy: &jobsetapi.FailurePolicy{MaxRestarts: 0},
			SuccessPolicy: &jobsetapi.SuccessPolicy{Operator: jobsetapi.OperatorAll},
		},
	}
}

func workerMemory(js *jobsetapi.JobSet, rjob string) resource.Quantity {
	for _, rj := range js.Spec.ReplicatedJobs {
		if rj.Name == rjob {
			return rj.Template.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
		}
	}
	return resource.Quantity{}
}

// TestIntegrationJobSet runs serve with kubernetes.kinds [Job, JobSet] against the
// real API server with the real JobSet CRD, the real Job controller and the test
// kubelet; the test plays the JobSet controller.
func TestIntegrationJobSet(t *testing.T) { testJobSet(t, false) }

// TestIntegrationJobSetController is TestIntegrationJobSet with the real JobSet
// controller (built from its Go module, with its webhooks) in place of the test's.
func TestIntegrationJobSetController(t *testing.T) { testJobSet(t, true) }

func testJobSet(t *testing.T, realController bool) {
	c := kubetest.Start(t)
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	jsc := jobsetclient.NewForConfigOrDie(c.Config)
	sets := jsc.JobsetV1alpha2().JobSets("ml")
	if realController {
		c.StartJobSet(t)
	} else {
		installJobSetCRD(t, c)
		playJobSetController(t, c.Client, jsc, "ml")
	}
	kubetest.RunKubelet(t, c.Client, truth, simcluster.Node{Name: "node-1"}, simcluster.Node{Name: "node-2"})

	// A JobSet of someone else's, with the name the fix of "squat" will want.
	theirs, err := sets.Create(ctx, &jobsetapi.JobSet{ObjectMeta: metav1.ObjectMeta{Name: "squat-af2", Namespace: "ml", Labels: map[string]string{"owner": "them"}},
		Spec: jobsetapi.JobSetSpec{Suspend: new(true), ReplicatedJobs: trainingJobSet("x", "1Gi", "1Gi", 1).Spec.ReplicatedJobs[:1]}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.Kafka.SessionTimeout = 6 * time.Second
	cfg.Kubernetes.Kubeconfig, cfg.Kubernetes.Namespaces, cfg.Kubernetes.LeaseNamespace = c.Kubeconfig, []string{"ml"}, "default"
	cfg.Kubernetes.Kinds = []string{config.KindJob, config.KindJobSet}
	cfg.BackoffSeconds = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	stop := runServe(t, &cfg, "serve")
	store, err := ledger.Open(ctx, cfg.LedgerDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	remediation := func(js *jobsetapi.JobSet, states ...ledger.State) ledger.Remediation {
		t.Helper()
		var r ledger.Remediation
		waitFor(t, fmt.Sprintf("remediation of jobset %s in %v", js.Name, states), 90*time.Second, func() bool {
			var err error
			r, err = store.Get(ctx, remediate.JobSetEventID(js))
			return err == nil && slicesContains(states, r.State)
		})
		return r
	}

	llm, err := sets.Create(ctx, trainingJobSet("llm", "16Gi", "20Gi", 2), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := remediation(llm, ledger.Succeeded, ledger.Failed, ledger.Abandoned, ledger.Rejected, ledger.PendingReview)
	t.Run("an OOMKilled worker fails the JobSet: one event, fixed once with more memory on the workers, the outcome recorded", func(t *testing.T) {
		ev := r.Event
		if r.State != ledger.Succeeded || r.Category != "oom_memory" || len(r.Attempts) != 1 || r.Attempts[0].JobName != "llm-af2" {
			t.Fatalf("remediation: %s %s (%s), attempts %+v; want oom_memory, llm-af2 succeeded", r.State, r.Category, r.Reason, r.Attempts)
		}
		if ev.Failure.Reason != "OOMKilled" || ev.Failure.ExitCode != 137 || ev.Job.Kind != failure.Training ||
			ev.Job.Labels[jobsetapi.ReplicatedJobNameKey] != "workers" || !strings.HasPrefix(ev.Job.Labels[remediate.LabelFailedPod], "llm-workers-") {
			t.Errorf("event: failure %+v, job kind %s labels %v; want a worker's OOMKilled 137, training", ev.Failure, ev.Job.Kind, ev.Job.Labels)
		}
		fix, err := sets.Get(ctx, "llm-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := workerMemory(fix, "workers"); m.Cmp(resource.MustParse("16Gi")) <= 0 {
			t.Errorf("llm-af2's workers ask for %s, want more than 16Gi", m.String())
		}
		if m := workerMemory(fix, "driver"); m.Cmp(resource.MustParse("2Gi")) != 0 {
			t.Errorf("llm-af2's driver asks for %s, want its 2Gi: it did not fail, and runs other pods", m.String())
		}
		if fix.Labels[failure.LabelManaged] != "true" || fix.Labels[failure.LabelOriginal] != "llm" || fix.Labels["team"] != "nlp" ||
			fix.Annotations[failure.AnnotationRemediation] != r.EventID || fix.Spec.FailurePolicy == nil || fix.Spec.SuccessPolicy == nil {
			t.Errorf("llm-af2: labels %v annotations %v policies %v %v", fix.Labels, fix.Annotations, fix.Spec.FailurePolicy, fix.Spec.SuccessPolicy)
		}
		outcomes, err := store.AttemptOutcomes(ctx, []string{r.EventID})
		if o, ok := outcomes[r.EventID]; err != nil || !ok || !o.Succeeded || o.Cost <= 0 || o.Resources.MemoryBytes <= 16<<30 {
			t.Errorf("outcome %+v (%v); want succeeded, priced, with the workers' new memory", o, err)
		}
	})

	t.Run("a JobSet autofix did not create is never modified", func(t *testing.T) {
		squat, err := sets.Create(ctx, trainingJobSet("squat", "16Gi", "20Gi", 1), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := remediation(squat, ledger.Abandoned, ledger.Failed, ledger.Rejected)
		got, err := sets.Get(ctx, "squat-af2", metav1.GetOptions{})
		// Its spec's generation, labels and annotations: the real JobSet controller
		// writes its status (a new resource version), which is its own business.
		if err != nil || got.Generation != theirs.Generation || !maps.Equal(got.Labels, theirs.Labels) ||
			!maps.Equal(got.Annotations, theirs.Annotations) || r.State != ledger.Abandoned {
			t.Errorf("their squat-af2 after the fix of squat was %s (%s): %v, labels %v, annotations %v, generation %d -> %d; "+
				"want it untouched and the fix abandoned", r.State, r.Reason, err, got.Labels, got.Annotations, theirs.Generation, got.Generation)
		}
	})

	t.Run("a pipeline trains as a JobSet and compresses as a Job; the OOM-killed JobSet stage is fixed and the run goes on", func(t *testing.T) {
		def, err := pipeline.Parse([]byte(`
name: llm
namespace: ml
artifacts: s3://models/llm
stages:
  - name: train
    kind: training
    jobset:
      replicatedJobs:
        - name: workers
          replicas: 2
          template:
            spec:
              template:
                metadata: {annotations: {"` + truthMemory + `": "10Gi", "` + simcluster.TruthRunSeconds + `": "2"}}
                spec: {containers: [{name: train, image: "trainer:1", resources: {requests: {cpu: "2", memory: 8Gi}, limits: {memory: 8Gi}}}]}
  - name: compress
    kind: compression
    job:
      spec: {containers: [{name: quantize, image: "tensorrt:24.05", resources: {limits: {memory: 4Gi}}}]}
`))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		d := &pipeline.Driver{Client: c.Client, JobSets: jsc, Chains: service.LedgerChains(store), Poll: 200 * time.Millisecond}
		st, err := d.Run(runCtx, def, "r1")
		if err != nil || st.Phase != pipeline.Succeeded {
			t.Fatalf("run r1: %+v, %v", st, err)
		}
		if train := st.Stages[0]; train.Attempts != 2 || train.Object != "llm-r1-train-af2" {
			t.Errorf("train stage = %+v, want it to succeed on the fixed JobSet llm-r1-train-af2", train)
		}
		fix, err := sets.Get(ctx, "llm-r1-train-af2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := workerMemory(fix, "workers"); m.Cmp(resource.MustParse("8Gi")) <= 0 {
			t.Errorf("llm-r1-train-af2's workers ask for %s, want more than 8Gi", m.String())
		}
		if fix.Labels[pipeline.LabelRun] != "r1" || fix.Labels[failure.LabelStage] != "train" {
			t.Errorf("llm-r1-train-af2's labels %v: want the run's and the stage's", fix.Labels)
		}
		compress, err := c.Client.BatchV1().Jobs("ml").Get(ctx, "llm-r1-compress", metav1.GetOptions{})
		if err != nil || envOf(compress, "ARTIFACT_IN") != "s3://models/llm/r1/train" {
			t.Errorf("compress stage Job: %v, reads %q; want the train stage's output", err, envOf(compress, "ARTIFACT_IN"))
		}
	})

	t.Run("autofix watch publishes a failed JobSet's one event, with JobSet in kubernetes.kinds", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		brokers := []string{cfg.Kafka.EmbeddedAddr}
		if err := ingest.EnsureTopics(wctx, brokers, ingest.Security{}, ingest.Topic{Name: "watched-jobsets", Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "watch.yaml")
		conf := fmt.Sprintf("kubernetes: {kubeconfig: %q, namespaces: [ml], kinds: [Job, JobSet]}\n", c.Kubeconfig)
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			root := newRootCmd()
			root.SetArgs([]string{"watch", "--config", file, "--brokers", brokers[0], "--topic", "watched-jobsets"})
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			done <- root.ExecuteContext(wctx)
		}()
		watched, err := sets.Create(ctx, trainingJobSet("watched", "4Gi", "6Gi", 2), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: "watched-jobsets", MaxWait: 500 * time.Millisecond})
		defer func() { _ = r.Close() }()
		rctx, rcancel := context.WithTimeout(wctx, 90*time.Second)
		defer rcancel()
		var got []string
		for {
			m, err := r.ReadMessage(rctx)
			if err != nil {
				t.Fatalf("no event of JobSet watched on the topic (got %v): %v", got, err)
			}
			ev, err := failure.Decode(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ev.ID)
			if ev.ID != remediate.JobSetEventID(watched) {
				continue // the JobSets that failed before watch started
			}
			if ev.Failure.Reason != "OOMKilled" || ev.Job.Labels[jobsetapi.ReplicatedJobNameKey] != "workers" {
				t.Errorf("event of watched: %+v, labels %v; want a worker's OOMKilled", ev.Failure, ev.Job.Labels)
			}
			break
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	})

	t.Run("nothing is submitted twice across a restart", func(t *testing.T) {
		stop()
		cfg.HTTP.Addr = freeAddr(t)
		runServe(t, &cfg, "serve again")
		// A JobSet that fails after the restart: once its remediation is recorded,
		// the restarted watcher has handled what it listed first (llm among them).
		after := trainingJobSet("after", "4Gi", "1Gi", 1)
		after.Spec.ReplicatedJobs[1].Template.Spec.Template.Annotations[truthUserCode] = "true"
		after, err := sets.Create(ctx, after, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the restarted serve to record the JobSet that failed after it started", 90*time.Second, func() bool {
			_, err := store.Get(ctx, remediate.JobSetEventID(after))
			return err == nil
		})
		list, err := sets.List(ctx, metav1.ListOptions{LabelSelector: failure.LabelOriginal + "=llm"})
		if err != nil || len(list.Items) != 1 || list.Items[0].Name != "llm-af2" {
			t.Errorf("attempts of llm after the restart: %v %v, want llm-af2 alone", names(list), err)
		}
		again, err := store.Get(ctx, remediate.JobSetEventID(llm))
		if err != nil || len(again.Attempts) != 1 || again.State != ledger.Succeeded {
			t.Errorf("llm's remediation after the restart: %v %s, %d attempts", err, again.State, len(again.Attempts))
		}
	})

	t.Run("the failures of a JobSet's Jobs are the JobSet's, not events of their own", func(t *testing.T) {
		jobs, err := c.Client.BatchV1().Jobs("ml").List(ctx, metav1.ListOptions{LabelSelector: jobsetapi.JobSetNameKey + "=llm"})
		if err != nil || len(jobs.Items) == 0 {
			t.Fatalf("llm's Jobs: %v (%d)", err, len(jobs.Items))
		}
		for _, j := range jobs.Items {
			if _, err := store.Get(ctx, remediate.JobEventID(&j)); err == nil {
				t.Errorf("Job %s of llm has an event of its own", j.Name)
			}
		}
	})
}

func slicesContains(states []ledger.State, s ledger.State) bool {
	for _, st := range states {
		if st == s {
			return true
		}
	}
	return false
}

func names(l *jobsetapi.JobSetList) []string {
	if l == nil {
		return nil
	}
	var out []string
	for _, js := range l.Items {
		out = append(out, js.Name)
	}
	return out
}
