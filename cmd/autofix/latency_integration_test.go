//go:build integration

package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/kubetest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/remediate"
	"github.com/autofix/autofix/simcluster"
)

var latencyFailures = flag.Int("failures", 100, "how many failures BenchmarkFailureToFix measures (fewer than 50 only for a smoke run)")

// BenchmarkFailureToFix measures what a user waits for: from a Job's Failed
// condition to the creation of its fixed re-submission, on the real control plane
// (kube-apiserver, the Job controller, the test kubelet) with autofix serve acting
// on it with the default settings. Failures come one at a time: an OOMKilled
// training Job, which the default policy fixes with more memory at once. Every
// time is taken on this process's clock: the Failed condition and the new Job as
// an informer here sees them (the condition's lastTransitionTime has a one-second
// resolution), the watcher's publication from serve's log record, the intake's
// receipt from the ledger, and the remediation's recording by polling the ledger
// every 5 ms.
//
// One call runs -failures failures (default 100; CI's smoke run: 10) whatever b.N
// is, so keep the default -benchtime:
//
//	go test -tags integration -run '^$' -bench FailureToFix ./cmd/autofix
func BenchmarkFailureToFix(b *testing.B) {
	n := *latencyFailures
	if n < 1 {
		b.Fatalf("-failures %d, want at least 1", n)
	}
	c := kubetest.Start(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	for _, ns := range []string{"ml", "autofix"} { // autofix: the leader lease's default namespace
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	kubetest.RunKubelet(b, c.Client, truth,
		simcluster.Node{Name: "gpu-node-1", Labels: map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"}},
		simcluster.Node{Name: "gpu-node-2", Labels: map[string]string{"nvidia.com/gpu.product": "nvidia-a100-40gb"}})
	seen := newJobTimes()
	f := informers.NewSharedInformerFactoryWithOptions(c.Client, 0, informers.WithNamespace("ml"))
	jobs := f.Batch().V1().Jobs().Informer()
	if _, err := jobs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { seen.observe(obj.(*batchv1.Job)) }, UpdateFunc: func(_, obj any) { seen.observe(obj.(*batchv1.Job)) },
	}); err != nil {
		b.Fatal(err)
	}
	f.Start(ctx.Done())

	// serve with the default settings, but for where it keeps and listens.
	cfg := config.Default()
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = b.TempDir(), freeAddrTB(b), freeAddrTB(b)
	cfg.Kubernetes.Kubeconfig = c.Kubeconfig
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	published := &publishLog{at: map[string]time.Time{}}
	serveTB(b, &cfg, slog.New(published))
	store, err := ledger.Open(ctx, cfg.LedgerDSN())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })

	fail := func(name string) (hops, error) {
		created := createOOMJob(ctx, b, c, name)
		id := remediate.JobEventID(created)
		var h hops
		deadline := time.Now().Add(2 * time.Minute)
		for h.fixed.IsZero() {
			if time.Now().After(deadline) {
				return h, fmt.Errorf("%s: no fixed re-submission within 2 minutes (%+v)", name, h)
			}
			if h.recorded.IsZero() {
				if r, err := store.Get(ctx, id); err == nil {
					switch r.State {
					case ledger.Approved, ledger.Submitted, ledger.Succeeded:
						h.recorded, h.received = time.Now(), r.ReceivedAt
					case ledger.PendingReview, ledger.Rejected, ledger.Abandoned, ledger.Failed:
						return h, fmt.Errorf("%s: remediation %s, want it approved", name, r.State)
					}
				}
			}
			h.failed, h.failedCond, h.fixed, h.fixedCreated = seen.times(name)
			time.Sleep(5 * time.Millisecond)
		}
		h.published = published.time(id)
		if h.recorded.IsZero() || h.recorded.After(h.fixed) {
			h.recorded = h.fixed // the last poll came after the fix
		}
		return h, nil
	}
	for i := range 2 { // warm up: the consumer group formed, the leader acting, the connections open
		if _, err := fail(fmt.Sprintf("warmup-%d", i)); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	var all []hops
	for i := range n {
		h, err := fail(fmt.Sprintf("lat-%03d", i))
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, h)
	}
	b.StopTimer()
	reportLatency(b, all)
}

// hops are the times of one failure's way to its fix, on the benchmark's clock but
// failedCond and fixedCreated (the API server's, to the second).
type hops struct {
	failed     time.Time // the Job's Failed condition seen
	failedCond time.Time // its lastTransitionTime
	published  time.Time // serve's watcher published the event
	received   time.Time // serve's intake received it (the ledger's receivedAt)
	recorded   time.Time // its approved remediation is in the ledger
	fixed      time.Time // the re-submitted Job seen
	// fixedCreated is the re-submitted Job's creationTimestamp.
	fixedCreated time.Time
}

// reportLatency reports the percentiles of the whole wait and of each hop, and logs
// them as a table.
func reportLatency(b *testing.B, all []hops) {
	type hop struct {
		name     string
		from, to func(h hops) time.Time
	}
	steps := []hop{
		{"total", func(h hops) time.Time { return h.failed }, func(h hops) time.Time { return h.fixed }},
		{"watcher", func(h hops) time.Time { return h.failed }, func(h hops) time.Time { return h.published }},
		{"kafka", func(h hops) time.Time { return h.published }, func(h hops) time.Time { return h.received }},
		{"intake", func(h hops) time.Time { return h.received }, func(h hops) time.Time { return h.recorded }},
		{"dispatch", func(h hops) time.Time { return h.recorded }, func(h hops) time.Time { return h.fixed }},
		{"api-seconds", func(h hops) time.Time { return h.failedCond }, func(h hops) time.Time { return h.fixedCreated }},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%d failures; ms from the Failed condition seen to the fixed Job seen "+
		"(api-seconds: from its lastTransitionTime to the fixed Job's creationTimestamp, both to the second)\n"+
		"%-12s %8s %8s %8s %8s\n", len(all), "hop", "p50", "p90", "p99", "max")
	for _, s := range steps {
		var ms []float64
		for _, h := range all {
			if from, to := s.from(h), s.to(h); !from.IsZero() && !to.IsZero() {
				ms = append(ms, float64(to.Sub(from).Microseconds())/1000)
			}
		}
		slices.Sort(ms)
		p50, p90, p99 := percentile(ms, 50), percentile(ms, 90), percentile(ms, 99)
		fmt.Fprintf(&table, "%-12s %8.0f %8.0f %8.0f %8.0f\n", s.name, p50, p90, p99, percentile(ms, 100))
		prefix := s.name + "-"
		if s.name == "total" {
			prefix = ""
		}
		b.ReportMetric(p50, prefix+"p50-ms")
		b.ReportMetric(p99, prefix+"p99-ms")
	}
	b.ReportMetric(0, "ns/op") // one run of many failures: the percentiles say it
	table.WriteString("slowest:")
	slowest := slices.SortedFunc(slices.Values(all), func(x, y hops) int { return cmp.Compare(y.fixed.Sub(y.failed), x.fixed.Sub(x.failed)) })
	for i, h := range slowest[:min(3, len(slowest))] {
		if i > 0 {
			table.WriteString(";")
		}
		fmt.Fprintf(&table, " %d =", h.fixed.Sub(h.failed).Milliseconds())
		for _, s := range steps[1:5] {
			if from, to := s.from(h), s.to(h); from.IsZero() || to.IsZero() {
				fmt.Fprintf(&table, " %s ?", s.name)
			} else {
				fmt.Fprintf(&table, " %s %d", s.name, to.Sub(from).Milliseconds())
			}
		}
	}
	b.Log(table.String())
}

// percentile is the nearest-rank p-th percentile of sorted ms (NaN when empty).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// jobTimes records when the benchmark's informer first saw each Job fail, and each
// fixed re-submission, by the original Job's name.
type jobTimes struct {
	mu                                  sync.Mutex
	failed, failedCond, fixed, fixedAPI map[string]time.Time
}

func newJobTimes() *jobTimes {
	return &jobTimes{failed: map[string]time.Time{}, failedCond: map[string]time.Time{}, fixed: map[string]time.Time{}, fixedAPI: map[string]time.Time{}}
}

func (j *jobTimes) observe(job *batchv1.Job) {
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if orig := job.Labels[failure.LabelOriginal]; orig != "" {
		if _, ok := j.fixed[orig]; !ok {
			j.fixed[orig], j.fixedAPI[orig] = now, job.CreationTimestamp.Time
		}
		return
	}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			if _, ok := j.failed[job.Name]; !ok {
				j.failed[job.Name], j.failedCond[job.Name] = now, c.LastTransitionTime.Time
			}
		}
	}
}

func (j *jobTimes) times(name string) (failed, failedCond, fixed, fixedAPI time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed[name], j.failedCond[name], j.fixed[name], j.fixedAPI[name]
}

// publishLog is serve's log handler: it keeps when the watcher published each
// event, and writes everything to stderr when AUTOFIX_TEST_LOG is set.
type publishLog struct {
	mu    sync.Mutex
	at    map[string]time.Time
	attrs []slog.Attr
}

func (p *publishLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (p *publishLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "failure published" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "event" {
				p.mu.Lock()
				p.at[a.Value.String()] = r.Time
				p.mu.Unlock()
				return false
			}
			return true
		})
	}
	if os.Getenv("AUTOFIX_TEST_LOG") != "" {
		return slog.NewTextHandler(os.Stderr, nil).WithAttrs(p.attrs).Handle(ctx, r)
	}
	return nil
}

func (p *publishLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &withAttrs{p: p, attrs: attrs}
}

func (p *publishLog) WithGroup(string) slog.Handler { return p }

func (p *publishLog) time(id string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at[id]
}

// withAttrs is publishLog with the attributes of a logger's With.
type withAttrs struct {
	p     *publishLog
	attrs []slog.Attr
}

func (w *withAttrs) Enabled(ctx context.Context, l slog.Level) bool { return w.p.Enabled(ctx, l) }
func (w *withAttrs) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(w.attrs...)
	return w.p.Handle(ctx, r)
}
func (w *withAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &withAttrs{p: w.p, attrs: append(slices.Clone(w.attrs), attrs...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }

// createOOMJob creates a training Job whose pod the test kubelet ends OOMKilled: it
// asks for 16Gi and needs 20Gi.
func createOOMJob(ctx context.Context, b *testing.B, c *kubetest.Cluster, name string) *batchv1.Job {
	b.Helper()
	zero := int32(0)
	mem := resource.MustParse("16Gi")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", Labels: map[string]string{failure.LabelKind: "training"}},
		Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{truthMemory: "20Gi"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main", Image: "registry.local/" + name + ":1.0",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: mem},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: mem}}}}}}},
	}
	created, err := c.Client.BatchV1().Jobs("ml").Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return created
}

// serveTB runs serve until the benchmark ends, as runServe does for tests.
func serveTB(tb testing.TB, cfg *config.Config, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, code := getReady(cfg.HTTP.Addr); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("serve not ready within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddrTB(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}
