package telemetry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/promtest"
	"github.com/autofix/autofix/internal/testwait"
)

// The tests below run against a real Prometheus server holding the series of the
// tests' pods, as cAdvisor (through the kubelet) and the DCGM exporter name them.

// t0 is when the tests' runs start: an hour ago, so that Prometheus takes all of
// their samples in one scrape.
var t0 = promtest.Epoch()

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

type sample struct {
	metric string
	labels []promtest.Label
	value  string
	at     time.Duration // after t0
}

// memory, fb and fs are samples of the three default series.
func memory(ns, pod, container, value string, at time.Duration) sample {
	return sample{"container_memory_working_set_bytes", []promtest.Label{{Name: "namespace", Value: ns}, {Name: "pod", Value: pod},
		{Name: "container", Value: container}, {Name: "job", Value: "kubelet"}, {Name: "metrics_path", Value: "/metrics/cadvisor"}}, value, at}
}

func fb(ns, pod, gpu, value string, at time.Duration) sample {
	return sample{"DCGM_FI_DEV_FB_USED", []promtest.Label{{Name: "namespace", Value: ns}, {Name: "pod", Value: pod},
		{Name: "container", Value: "train"}, {Name: "gpu", Value: gpu}, {Name: "UUID", Value: "GPU-" + gpu}}, value, at}
}

func fs(ns, pod, container, value string, at time.Duration) sample {
	return sample{"container_fs_usage_bytes", []promtest.Label{{Name: "namespace", Value: ns}, {Name: "pod", Value: pod},
		{Name: "container", Value: container}, {Name: "device", Value: "/dev/nvme0n1p1"}}, value, at}
}

// openMetrics is the OpenMetrics text of samples, each series' samples in time order.
func openMetrics(samples []sample) string {
	var b strings.Builder
	for _, m := range []string{"container_memory_working_set_bytes", "DCGM_FI_DEV_FB_USED", "container_fs_usage_bytes"} {
		b.WriteString("# TYPE " + m + " gauge\n")
		for _, s := range samples {
			if s.metric == m {
				b.WriteString(promtest.Sample(s.metric, s.labels, s.value, t0.Add(s.at)))
			}
		}
	}
	b.WriteString("# EOF\n")
	return b.String()
}

// cluster is what the tests' Prometheus holds: a finished run of two pods in ml
// (train-a, then its retry train-b), with series that must not count beside them,
// pods named with characters that mean something in PromQL or a regular
// expression, and samples that cannot be peaks.
var cluster = []sample{
	// The run: train-a's main container peaks at 7 GiB, train-b's at 7.5 GiB.
	memory("ml", "train-a", "train", "1073741824", 0),
	memory("ml", "train-a", "train", "7516192768", 30*time.Second),
	memory("ml", "train-a", "train", "3221225472", 60*time.Second),
	memory("ml", "train-b", "train", "8053063680", 150*time.Second),
	memory("ml", "train-b", "train", "2147483648", 180*time.Second),
	// Not the main container: the pod's cgroup (container=""), the pause container,
	// a sidecar.
	memory("ml", "train-a", "", "12884901888", 30*time.Second),
	memory("ml", "train-a", "POD", "1048576", 30*time.Second),
	memory("ml", "train-a", "log-shipper", "10737418240", 30*time.Second),
	// After the run's end, and a pod of the same name in another namespace.
	memory("ml", "train-a", "train", "21474836480", 600*time.Second),
	memory("ml-prod", "train-a", "train", "53687091200", 30*time.Second),
	// Two GPUs of train-a: the peak on one of them is 39,000 MiB.
	fb("ml", "train-a", "0", "30000", 30*time.Second),
	fb("ml", "train-a", "1", "39000", 60*time.Second),
	fb("ml", "train-a", "1", "12000", 90*time.Second),
	fs("ml", "train-a", "train", "5368709120", 60*time.Second),
	fs("ml", "train-a", "log-shipper", "42949672960", 60*time.Second),
	// Names a careless query would match too broadly, or be broken by.
	memory("ml", "a.b", "train", "1073741824", 30*time.Second),
	memory("ml", "axb", "train", "2147483648", 30*time.Second),
	memory("ml", ".*", "train", "3221225472", 30*time.Second),
	memory("ml", `q"uote`, "train", "4294967296", 30*time.Second),
	memory("ml", `back\slash`, "train", "5368709120", 30*time.Second),
	memory("ml", "x|y", "train", "6442450944", 30*time.Second),
	memory("ml", "x", "train", "7516192768", 30*time.Second),
	memory("ml", "ünïcödé", "train", "8589934592", 30*time.Second),
	// Samples that cannot be peaks.
	memory("ml", "nan", "train", "NaN", 30*time.Second),
	memory("ml", "inf", "train", "+Inf", 30*time.Second),
	memory("ml", "negative", "train", "-4096", 30*time.Second),
	memory("ml", "two-pib", "train", "2.3e15", 30*time.Second),
	fb("ml", "fb-over", "0", "60000", 30*time.Second), // 58.6 GiB on a 40 GiB GPU
	fs("ml", "fs-nan", "train", "NaN", 30*time.Second),
}

func startPrometheus(t *testing.T) *promtest.Server {
	t.Helper()
	return promtest.Start(t, openMetrics(cluster))
}

func newSource(t *testing.T, url string, o Options) *Source {
	t.Helper()
	o.URL = url
	o.Memory, o.GPUMemory, o.EphemeralStorage = DefaultMemory(), DefaultGPUMemory(), DefaultEphemeralStorage()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(pods ...string) Query {
	return Query{Namespace: "ml", Pods: pods, Container: "train", Start: t0, End: t0.Add(5 * time.Minute)}
}

func TestPrometheusPeaks(t *testing.T) {
	t.Parallel() // each with a Prometheus of its own
	p := startPrometheus(t)
	src := newSource(t, p.URL, Options{Timeout: testwait.Timeout(t)})
	gpu := func(q Query) Query { q.GPUs, q.GPUMemoryBytes = 2, 40*gib; return q }
	late := run("train-a")
	late.Start, late.End = t0.Add(100*time.Second), t0.Add(200*time.Second)
	injection := run("train-a")
	injection.Namespace = `ml"} or vector(1e12) or x{a="`
	tests := []struct {
		name string
		q    Query
		want failure.Usage
	}{
		{"a finished run of two pods", gpu(run("train-a", "train-b")),
			failure.Usage{PeakMemoryBytes: 7680 * mib, PeakGPUMemoryBytes: 39000 * mib, PeakEphemeralStorageBytes: 5 * gib}},
		{"its first pod alone", gpu(run("train-a")),
			failure.Usage{PeakMemoryBytes: 7 * gib, PeakGPUMemoryBytes: 39000 * mib, PeakEphemeralStorageBytes: 5 * gib}},
		{"no GPUs: no GPU peak looked up", run("train-a"), failure.Usage{PeakMemoryBytes: 7 * gib, PeakEphemeralStorageBytes: 5 * gib}},
		{"only the samples within the run", late, failure.Usage{}},
		{"a pod without series", gpu(run("no-metrics")), failure.Usage{}},
		{"a dot is a dot", run("a.b"), failure.Usage{PeakMemoryBytes: 1 * gib}},
		{"a dot is a dot among several pods", run("a.b", "no-metrics"), failure.Usage{PeakMemoryBytes: 1 * gib}},
		{".* is a name", run(".*"), failure.Usage{PeakMemoryBytes: 3 * gib}},
		{".* is a name among several pods", run(".*", "no-metrics"), failure.Usage{PeakMemoryBytes: 3 * gib}},
		{"a quote", run(`q"uote`, "no-metrics"), failure.Usage{PeakMemoryBytes: 4 * gib}},
		{"a backslash", run(`back\slash`), failure.Usage{PeakMemoryBytes: 5 * gib}},
		{"a bar is not an alternative", run("x|y", "no-metrics"), failure.Usage{PeakMemoryBytes: 6 * gib}},
		{"unicode", run("ünïcödé", "no-metrics"), failure.Usage{PeakMemoryBytes: 8 * gib}},
		{"a namespace that tries to add to the query", injection, failure.Usage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := src.Usage(testwait.Context(t), tt.q)
			if err != nil || got != tt.want {
				t.Errorf("Usage(%+v) = %+v, %v; want %+v, nil", tt.q, got, err, tt.want)
			}
		})
	}
}

func TestPrometheusBadValuesAreRefused(t *testing.T) {
	t.Parallel() // each with a Prometheus of its own
	p := startPrometheus(t)
	src := newSource(t, p.URL, Options{Timeout: testwait.Timeout(t)})
	tests := []struct {
		pod, peak string
		gpus      int
	}{
		{"nan", "memory", 0},
		{"inf", "memory", 0},
		{"negative", "memory", 0},
		{"two-pib", "memory", 0},
		{"fb-over", "gpuMemory", 1},
		{"fs-nan", "ephemeralStorage", 0},
	}
	for _, tt := range tests {
		t.Run(tt.pod, func(t *testing.T) {
			q := run(tt.pod)
			q.GPUs, q.GPUMemoryBytes = tt.gpus, 40*gib
			got, err := src.Usage(testwait.Context(t), q)
			var bad *BadValueError
			if got != (failure.Usage{}) || !errors.As(err, &bad) || bad.Peak != tt.peak {
				t.Errorf("Usage(%s) = %+v, %v; want no peaks and a BadValueError of %s", tt.pod, got, err, tt.peak)
			}
		})
	}
	// Refused values are the data's fault, not Prometheus's: lookups go on.
	for range 5 {
		if _, err := src.Usage(testwait.Context(t), run("nan")); errors.Is(err, ErrShortCircuited) {
			t.Fatalf("Usage after refused values = %v, want lookups to go on", err)
		}
	}
}

// TestPrometheusStopped: with Prometheus gone, a lookup fails (no peaks), and after
// FailureThreshold failures lookups return at once without trying, until the
// cooldown is over; then one tries again, and once Prometheus answers, all do.
func TestPrometheusStopped(t *testing.T) {
	t.Parallel() // each with a Prometheus of its own
	p := startPrometheus(t)
	src := newSource(t, p.URL, Options{Timeout: testwait.Timeout(t), FailureThreshold: 2, Cooldown: time.Minute})
	now := t0
	src.now = func() time.Time { return now }
	want := failure.Usage{PeakMemoryBytes: 7 * gib, PeakEphemeralStorageBytes: 5 * gib}
	if got, err := src.Usage(testwait.Context(t), run("train-a")); err != nil || got != want {
		t.Fatalf("Usage with Prometheus up = %+v, %v; want %+v", got, err, want)
	}
	p.Stop()
	for i := range 2 {
		got, err := src.Usage(testwait.Context(t), run("train-a"))
		if got != (failure.Usage{}) || err == nil || errors.Is(err, ErrShortCircuited) {
			t.Fatalf("lookup %d with Prometheus stopped = %+v, %v; want no peaks and the connection's error", i+1, got, err)
		}
	}
	got, err := src.Usage(testwait.Context(t), run("train-a"))
	if got != (failure.Usage{}) || !errors.Is(err, ErrShortCircuited) {
		t.Fatalf("lookup after 2 failures = %+v, %v; want ErrShortCircuited", got, err)
	}
	now = now.Add(time.Minute)
	if _, err := src.Usage(testwait.Context(t), run("train-a")); err == nil || errors.Is(err, ErrShortCircuited) {
		t.Fatalf("the probe after the cooldown = %v, want it tried (and failed)", err)
	}
	if _, err := src.Usage(testwait.Context(t), run("train-a")); !errors.Is(err, ErrShortCircuited) {
		t.Fatalf("after a failed probe = %v, want short-circuited again", err)
	}
	up := startPrometheus(t) // on another port: the source's URL is the old one
	src.api = newSource(t, up.URL, Options{}).api
	now = now.Add(time.Minute)
	for i := range 2 {
		if got, err := src.Usage(testwait.Context(t), run("train-a")); err != nil || got != want {
			t.Fatalf("lookup %d with Prometheus back = %+v, %v; want %+v", i+1, got, err, want)
		}
	}
}

// TestLookupIsBounded: a Prometheus that accepts connections and never answers
// holds a lookup for Timeout, not longer: the lookup ends with the deadline's error.
func TestLookupIsBounded(t *testing.T) {
	hang := blackHole(t)
	src := newSource(t, hang, Options{Timeout: 50 * time.Millisecond, FailureThreshold: 1, Cooldown: time.Hour})
	got, err := src.Usage(testwait.Context(t), run("train-a"))
	if got != (failure.Usage{}) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Usage against a server that never answers = %+v, %v; want the timeout's error", got, err)
	}
	if _, err := src.Usage(testwait.Context(t), run("train-a")); !errors.Is(err, ErrShortCircuited) {
		t.Fatalf("the next lookup = %v, want ErrShortCircuited (no second wait)", err)
	}
}
