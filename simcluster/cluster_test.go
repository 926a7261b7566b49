package simcluster

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/autofix/autofix/failure"
)

// tick is how often the simulated controllers look.
const tick = 20 * time.Millisecond

// start runs a cluster until the test ends; stop stops it earlier. Call it in a
// synctest bubble (see waitFor).
func start(t *testing.T, path string) (*Cluster, kubernetes.Interface, context.CancelFunc) {
	t.Helper()
	c, err := New(Options{Path: path, Namespaces: []string{"ml"}, Tick: tick,
		Truth: GroundTruth([]failure.GPUModel{{Name: "a100-40gb", MemoryGiB: 40}}, "gpu"),
		Nodes: []Node{{Name: "n1", Labels: map[string]string{"gpu": "a100-40gb"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return c, c.Client(), stop
}

// waitFor advances the bubble's clock a controller tick at a time until cond holds,
// for at most limit of that clock. Tests run in a synctest bubble: its clock moves
// only when every goroutine of the simulated cluster is blocked, so each tick's
// work is done before the next tick comes, however slow the machine or the race
// detector; limit counts simulated time, not the machine's.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(tick) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s of simulated time", what, limit)
		}
	}
}

func job(name, memory string, truth map[string]string) *batchv1.Job {
	zero := int32(0)
	truth[TruthRunSeconds] = "0.05"
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml"},
		Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: truth},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main", Image: "x",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memory)}}}}}}},
	}
}

func condition(j *batchv1.Job) (batchv1.JobConditionType, string) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c.Type, c.Reason
		}
	}
	return "", ""
}

func TestJobsEndAsTheGroundTruthSays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, kube, _ := start(t, "")
		ctx := context.Background()
		oom, err := kube.BatchV1().Jobs("ml").Create(ctx, job("small", "16Gi", map[string]string{TruthMemory: "20Gi"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if oom.UID == "" || oom.Generation != 1 || oom.ResourceVersion == "" {
			t.Errorf("created job has uid %q generation %d resourceVersion %q; the API server sets all three", oom.UID, oom.Generation, oom.ResourceVersion)
		}
		if _, err := kube.BatchV1().Jobs("ml").Create(ctx, job("big", "24Gi", map[string]string{TruthMemory: "20Gi"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var failed, done *batchv1.Job
		waitFor(t, "both jobs to end", 10*time.Second, func() bool {
			failed, _ = kube.BatchV1().Jobs("ml").Get(ctx, "small", metav1.GetOptions{})
			done, _ = kube.BatchV1().Jobs("ml").Get(ctx, "big", metav1.GetOptions{})
			a, _ := condition(failed)
			b, _ := condition(done)
			return a != "" && b != ""
		})
		if c, reason := condition(failed); c != batchv1.JobFailed || reason != batchv1.JobReasonBackoffLimitExceeded || failed.Status.Failed != 1 {
			t.Errorf("16Gi job with a 20Gi need: %s (%s), %d failed pods; want Failed (BackoffLimitExceeded), 1", c, reason, failed.Status.Failed)
		}
		if c, _ := condition(done); c != batchv1.JobComplete {
			t.Errorf("24Gi job with a 20Gi need: %s, want Complete", c)
		}
		pods, err := kube.CoreV1().Pods("ml").List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=small"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods of small: %v, %v", pods, err)
		}
		p := pods.Items[0]
		if cs := p.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.Reason != "OOMKilled" ||
			cs[0].State.Terminated.ExitCode != 137 || p.Spec.NodeName != "n1" || !metav1.IsControlledBy(&p, failed) {
			t.Errorf("pod of small: node %q, statuses %+v; want OOMKilled 137 on n1, controlled by the job", p.Spec.NodeName, cs)
		}
		rc, err := kube.CoreV1().Pods("ml").GetLogs(p.Name, &corev1.PodLogOptions{}).Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		_ = rc.Close()
		if string(b) == "" || string(b) == "fake logs" {
			t.Errorf("pods/log of the OOMKilled pod: %q, want what it wrote", b)
		}
	})
}

func TestAPIKeepsOptimisticConcurrencyAndStatusApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, kube, _ := start(t, "")
		ctx := context.Background()
		j, err := kube.BatchV1().Jobs("ml").Create(ctx, job("x", "1Gi", map[string]string{TruthUserCode: "true"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the job to fail", 10*time.Second, func() bool {
			cur, _ := kube.BatchV1().Jobs("ml").Get(ctx, "x", metav1.GetOptions{})
			c, _ := condition(cur)
			return c == batchv1.JobFailed
		})
		stale := j.DeepCopy()
		stale.Labels = map[string]string{"a": "b"}
		if _, err := kube.BatchV1().Jobs("ml").Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			t.Errorf("update from a stale copy: %v, want a conflict", err)
		}
		cur, _ := kube.BatchV1().Jobs("ml").Get(ctx, "x", metav1.GetOptions{})
		cur.Labels = map[string]string{"a": "b"}
		cur.Status = batchv1.JobStatus{}
		got, err := kube.BatchV1().Jobs("ml").Update(ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := condition(got); c != batchv1.JobFailed || got.Generation != 1 {
			t.Errorf("an update of labels changed the status (%s) or the generation (%d)", c, got.Generation)
		}
	})
}

func deployment(crash bool) *appsv1.Deployment {
	replicas, deadline := int32(2), int32(1)
	ann := map[string]string{}
	if crash {
		ann[TruthCrash] = "true"
		ann[TruthRunSeconds] = "0.05"
	}
	sel := map[string]string{"app": "srv"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "srv", Namespace: "ml"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, ProgressDeadlineSeconds: &deadline, Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel, Annotations: ann},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "srv", Image: "srv"}}}}},
	}
}

func TestDeploymentRollsOutAndABadRevisionKeepsTheOldPods(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, kube, _ := start(t, "")
		ctx := context.Background()
		dc := kube.AppsV1().Deployments("ml")
		if _, err := dc.Create(ctx, deployment(false), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var d *appsv1.Deployment
		waitFor(t, "the rollout", 10*time.Second, func() bool {
			d, _ = dc.Get(ctx, "srv", metav1.GetOptions{})
			return d.Status.AvailableReplicas == 2 && d.Status.UpdatedReplicas == 2 && d.Status.ObservedGeneration == d.Generation
		})
		bad := deployment(true)
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := dc.Get(ctx, "srv", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Template = bad.Spec.Template
			d, err = dc.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil || d.Generation != 2 {
			t.Fatalf("a new template did not bump the generation: %v, %+v", err, d)
		}
		waitFor(t, "the bad rollout to pass its deadline", 10*time.Second, func() bool {
			d, _ = dc.Get(ctx, "srv", metav1.GetOptions{})
			for _, c := range d.Status.Conditions {
				if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
					return true
				}
			}
			return false
		})
		if d.Status.AvailableReplicas != 2 || d.Annotations[revisionAnnotation] != "2" || d.Status.UnavailableReplicas != 2 {
			t.Errorf("after a crashing rollout: %d available, %d unavailable, revision %s; want the 2 old pods serving, 2 new unavailable, revision 2",
				d.Status.AvailableReplicas, d.Status.UnavailableReplicas, d.Annotations[revisionAnnotation])
		}
		// Undo, as a client does: the controller writes the Deployment's status too, so
		// an update of a copy read before may conflict; read it again and retry.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := dc.Get(ctx, "srv", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Template = deployment(false).Spec.Template
			_, err = dc.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the undo", 10*time.Second, func() bool {
			d, _ = dc.Get(ctx, "srv", metav1.GetOptions{})
			return d.Annotations[revisionAnnotation] == "3" && d.Status.Replicas == 2 && d.Status.AvailableReplicas == 2
		})
	})
}

func TestClusterSurvivesARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cluster.json")
		_, kube, stop := start(t, path)
		ctx := context.Background()
		created, err := kube.BatchV1().Jobs("ml").Create(ctx, job("keep", "1Gi", map[string]string{TruthMemory: "2Gi"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the job to fail", 10*time.Second, func() bool {
			j, _ := kube.BatchV1().Jobs("ml").Get(ctx, "keep", metav1.GetOptions{})
			c, _ := condition(j)
			return c == batchv1.JobFailed
		})
		stop()
		_, kube, _ = start(t, path)
		j, err := kube.BatchV1().Jobs("ml").Get(ctx, "keep", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := condition(j); c != batchv1.JobFailed || j.UID != created.UID {
			t.Errorf("after a restart: %s, uid %s; want the same failed job (uid %s)", c, j.UID, created.UID)
		}
		if _, err := kube.BatchV1().Jobs("ml").Create(ctx, job("keep", "1Gi", map[string]string{}), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
			t.Errorf("creating it again: %v, want AlreadyExists", err)
		}
	})
}

// TestManyWritesDoNotOverflowWatches: the fake's watchers hold 100 events and panic
// when full; a large Deployment writes hundreds of pods in one pass, and its pods
// are all available at once only because they run on (the template names no
// restart policy: the API server's default, Always).
func TestManyWritesDoNotOverflowWatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, kube, _ := start(t, "")
		ctx := context.Background()
		d := deployment(false)
		n := int32(400)
		d.Spec.Replicas = &n
		if _, err := kube.AppsV1().Deployments("ml").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "400 replicas available", 10*time.Second, func() bool {
			got, err := kube.AppsV1().Deployments("ml").Get(ctx, "srv", metav1.GetOptions{})
			return err == nil && got.Status.AvailableReplicas == n
		})
	})
}

// TestServerPodsRunOn: the API server defaults a pod template's restart policy to
// Always, so a Deployment that names none gets pods that run until they are
// removed; they do not end like a Job's after a while and get replaced.
func TestServerPodsRunOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, kube, _ := start(t, "")
		ctx := context.Background()
		dc := kube.AppsV1().Deployments("ml")
		created, err := dc.Create(ctx, deployment(false), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := created.Spec.Template.Spec.RestartPolicy; got != corev1.RestartPolicyAlways {
			t.Errorf("created deployment's restartPolicy = %q, want %q (the API server's default)", got, corev1.RestartPolicyAlways)
		}
		waitFor(t, "the rollout", 10*time.Second, func() bool {
			d, err := dc.Get(ctx, "srv", metav1.GetOptions{})
			return err == nil && d.Status.AvailableReplicas == 2
		})
		time.Sleep(5 * time.Second) // far longer than a Job's pod runs (300 ms unless the truth says otherwise)
		pods, err := kube.CoreV1().Pods("ml").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		phases := map[corev1.PodPhase]int{}
		for _, p := range pods.Items {
			phases[p.Status.Phase]++
		}
		if len(pods.Items) != 2 || phases[corev1.PodRunning] != 2 {
			t.Errorf("a 2-replica server after 5 s has %d pods %v, want the same 2 running", len(pods.Items), phases)
		}
	})
}

// TestConcurrentWritesDoNotOverflowWatches: the fake tracker's watchers hold 100
// events and panic when full; the simulated kubelet writes from a goroutine per
// pod. However the scheduler runs many writers, a watch gets every event, once.
func TestConcurrentWritesDoNotOverflowWatches(t *testing.T) {
	c, err := New(Options{Namespaces: []string{"ml"}})
	if err != nil {
		t.Fatal(err)
	}
	kube := c.Client()
	ctx := context.Background()
	w, err := kube.CoreV1().ConfigMaps("ml").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	const writers, each = 200, 20
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range each {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d-%d", i, j), Namespace: "ml"}}
				if _, err := kube.CoreV1().ConfigMaps("ml").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	seen := map[string]bool{}
	for len(seen) < writers*each {
		ev := <-w.ResultChan()
		cm, ok := ev.Object.(*corev1.ConfigMap)
		if ev.Type != watch.Added || !ok || seen[cm.Name] {
			t.Fatalf("event %s %T after %d events; want each config map added once", ev.Type, ev.Object, len(seen))
		}
		seen[cm.Name] = true
	}
	wg.Wait()
}
