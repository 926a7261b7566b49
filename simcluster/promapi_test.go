package simcluster

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/telemetry"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		name, query string
		want        string // "" for an error
		labels      map[string]string
		match       bool
	}{
		{"equality", `max(max_over_time(m{namespace="ml",pod="p"}[30s]))`, "m 30",
			map[string]string{"namespace": "ml", "pod": "p", "container": "c"}, true},
		{"equality, another pod", `max(max_over_time(m{namespace="ml",pod="p"}[30s]))`, "m 30",
			map[string]string{"namespace": "ml", "pod": "q"}, false},
		{"a regexp, anchored", `max(max_over_time(m{pod=~"a\\.b|c"}[1s]))`, "m 1", map[string]string{"pod": "a.b"}, true},
		{"a regexp does not match more", `max(max_over_time(m{pod=~"a\\.b|c"}[1s]))`, "m 1", map[string]string{"pod": "axb"}, false},
		{"a regexp does not match a part", `max(max_over_time(m{pod=~"a\\.b|c"}[1s]))`, "m 1", map[string]string{"pod": "cc"}, false},
		{"escapes", `max(max_over_time(m{pod="q\"x\\y\n"}[1s]))`, "m 1", map[string]string{"pod": "q\"x\\y\n"}, true},
		{"a missing label is empty", `max(max_over_time(m{container=""}[1s]))`, "m 1", map[string]string{"pod": "p"}, true},
		{"no matchers", `max(max_over_time(m{}[1s]))`, "m 1", map[string]string{}, true},
		{"a space", `max(max_over_time(m{pod= "p"}[1s]))`, "", nil, false},
		{"another function", `sum(max_over_time(m{pod="p"}[1s]))`, "", nil, false},
		{"minutes", `max(max_over_time(m{pod="p"}[1m]))`, "", nil, false},
		{"no range", `max(max_over_time(m{pod="p"}))`, "", nil, false},
		{"a zero range", `max(max_over_time(m{pod="p"}[0s]))`, "", nil, false},
		{"a huge range", `max(max_over_time(m{pod="p"}[99999999999s]))`, "", nil, false},
		{"a sign", `max(max_over_time(m{pod="p"}[+5s]))`, "", nil, false},
		{"more after", `max(max_over_time(m{pod="p"}[5s])) or vector(1)`, "", nil, false},
		{"an unclosed string", `max(max_over_time(m{pod="p}[5s]))`, "", nil, false},
		{"a bad escape", `max(max_over_time(m{pod="\q"}[5s]))`, "", nil, false},
		{"a bad regexp", `max(max_over_time(m{pod=~"("}[5s]))`, "", nil, false},
		{"a not-equal", `max(max_over_time(m{pod!="p"}[5s]))`, "", nil, false},
		{"single quotes", `max(max_over_time(m{pod='p'}[5s]))`, "", nil, false},
		{"a metric name", `max(max_over_time({pod="p"}[5s]))`, "", nil, false},
		{"two matchers without a comma", `max(max_over_time(m{a="1"b="2"}[5s]))`, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := parseQuery(tt.query)
			if tt.want == "" {
				if err == nil {
					t.Errorf("parseQuery(%q) = %+v, want an error", tt.query, q)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseQuery(%q) = %v", tt.query, err)
			}
			if got := q.metric + " " + itoa(q.rangeSeconds); got != tt.want {
				t.Errorf("parseQuery(%q) = %s, want %s", tt.query, got, tt.want)
			}
			if got := q.matches(tt.labels); got != tt.match {
				t.Errorf("parseQuery(%q).matches(%v) = %v, want %v", tt.query, tt.labels, got, tt.match)
			}
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// FuzzParseQuery: parseQuery never panics; and a query telemetry builds for any
// names parses back into matchers that select exactly those names.
func FuzzParseQuery(f *testing.F) {
	f.Add("ml", "train-a", "train-b", "main", `max(max_over_time(m{pod="p"}[5s]))`)
	f.Add(`ml"} or vector(1)`, "a.b", "x|y", `c",x="`, `max(max_over_time(m{pod=~"a|("}[5s]))`)
	f.Add("ns", `back\slash`, "new\nline", "ünï", "max(max_over_time(m{")
	f.Fuzz(func(t *testing.T, ns, pod1, pod2, container, raw string) {
		_, _ = parseQuery(raw) // must not panic
		for _, s := range []string{ns, pod1, pod2, container} {
			if s == "" || !utf8.ValidString(s) || len(s) > failure.MaxNameLength {
				return // telemetry refuses these queries
			}
		}
		end := time.Unix(1_700_000_000, 0)
		q := telemetry.Query{Namespace: ns, Pods: []string{pod1, pod2}, Container: container, Start: end.Add(-time.Minute), End: end}
		expr := telemetry.DefaultMemory().Expr(&q)
		parsed, err := parseQuery(expr)
		if err != nil {
			t.Fatalf("parseQuery(%q) = %v", expr, err)
		}
		for _, p := range []string{pod1, pod2} {
			if !parsed.matches(map[string]string{"namespace": ns, "pod": p, "container": container}) {
				t.Errorf("%s does not select pod %q of its query", expr, p)
			}
		}
		for _, other := range []map[string]string{
			{"namespace": ns + "x", "pod": pod1, "container": container},
			{"namespace": ns, "pod": pod1 + "x", "container": container},
			{"namespace": ns, "pod": pod1, "container": container + "x"},
			{"namespace": ns, "pod": pod1, "container": ""},
		} {
			if other["pod"] == pod2 {
				continue
			}
			if parsed.matches(other) {
				t.Errorf("%s selects %v too", expr, other)
			}
		}
	})
}

// TestMetricsAPIThroughTelemetry: the series the kubelet keeps are found by
// telemetry's own client, as serve finds them; a pod that ran outside the run's
// window, or another pod, is not.
func TestMetricsAPIThroughTelemetry(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	gpu := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "train-x"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("2")}}}}}}
	c.kubelet.started(gpu, "gpu-node-1", end.Add(-90*time.Second+300*time.Millisecond), Peaks{MemoryBytes: 16 << 30, GPUMemoryBytes: 39000 << 20, StorageBytes: 3 << 30})
	c.kubelet.ended(gpu, end)
	other := gpu.DeepCopy()
	other.Name = "train-y"
	c.kubelet.started(other, "gpu-node-1", end.Add(-90*time.Second), Peaks{MemoryBytes: 60 << 30})
	c.kubelet.ended(other, end)
	srv := httptest.NewServer(c.MetricsAPI())
	t.Cleanup(srv.Close)
	src, err := telemetry.New(telemetry.Options{URL: srv.URL, Timeout: testwait.Timeout(t), Memory: telemetry.DefaultMemory(),
		GPUMemory: telemetry.DefaultGPUMemory(), EphemeralStorage: telemetry.DefaultEphemeralStorage()})
	if err != nil {
		t.Fatal(err)
	}
	// The watcher's window, from the API's times (to the second).
	q := telemetry.Query{Namespace: "ml", Pods: []string{"train-x"}, Container: "main", Start: end.Add(-90 * time.Second), End: end,
		GPUs: 2, GPUMemoryBytes: 40 << 30}
	got, err := src.Usage(testwait.Context(t), q)
	want := failure.Usage{PeakMemoryBytes: 16 << 30, PeakGPUMemoryBytes: 39000 << 20, PeakEphemeralStorageBytes: 3 << 30}
	if err != nil || got != want {
		t.Errorf("Usage(train-x) = %+v, %v; want %+v", got, err, want)
	}
	later := q
	later.Start, later.End = end.Add(time.Second), end.Add(time.Minute)
	if got, err := src.Usage(testwait.Context(t), later); err != nil || got != (failure.Usage{}) {
		t.Errorf("Usage(a window after the run) = %+v, %v; want nothing", got, err)
	}
	q.Container = "sidecar"
	if got, err := src.Usage(testwait.Context(t), q); err != nil || got.PeakMemoryBytes != 0 {
		t.Errorf("Usage(another container) = %+v, %v; want no memory peak", got, err)
	}
}

func TestMetricsAPIRefuses(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := c.MetricsAPI()
	for _, tt := range []struct {
		name   string
		method string
		form   url.Values
		status int
	}{
		{"another query", http.MethodGet, url.Values{"query": {"up"}}, http.StatusBadRequest},
		{"a bad time", http.MethodGet, url.Values{"query": {`max(max_over_time(m{}[1s]))`}, "time": {"noon"}}, http.StatusBadRequest},
		{"a NaN time", http.MethodPost, url.Values{"query": {`max(max_over_time(m{}[1s]))`}, "time": {"NaN"}}, http.StatusBadRequest},
		{"a delete", http.MethodDelete, nil, http.StatusMethodNotAllowed},
		{"fine", http.MethodPost, url.Values{"query": {`max(max_over_time(m{}[1s]))`}, "time": {"2026-05-01T12:00:00Z"}}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequestWithContext(context.Background(), tt.method, "/api/v1/query?"+tt.form.Encode(), nil)
			if tt.method == http.MethodPost {
				req = httptest.NewRequestWithContext(context.Background(), tt.method, "/api/v1/query", strings.NewReader(tt.form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.status {
				t.Errorf("%s %v = %d %s, want %d", tt.method, tt.form, w.Code, w.Body.String(), tt.status)
			}
		})
	}
}
