package telemetry

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestExpr(t *testing.T) {
	q := Query{Namespace: "ml", Pods: []string{"train-a"}, Container: "train", Start: t0, End: t0.Add(90*time.Second + time.Millisecond)}
	several := q
	several.Pods = []string{"train-b", "train-a", "train-b"}
	hostile := Query{Namespace: `ml"} or vector(1)`, Pods: []string{`a.b`, `q"x\y`, "new\nline", "x|y"}, Container: `c",x="`,
		Start: t0, End: t0}
	tests := []struct {
		name   string
		series Series
		q      Query
		want   string
	}{
		{"one pod", DefaultMemory(), q,
			`max(max_over_time(container_memory_working_set_bytes{namespace="ml",pod="train-a",container="train"}[91s]))`},
		{"several pods, each once, sorted", DefaultMemory(), several,
			`max(max_over_time(container_memory_working_set_bytes{namespace="ml",pod=~"train-a|train-b",container="train"}[91s]))`},
		{"no container label", DefaultGPUMemory(), q,
			`max(max_over_time(DCGM_FI_DEV_FB_USED{namespace="ml",pod="train-a"}[91s]))`},
		{"other labels", Series{Metric: "DCGM_FI_DEV_FB_USED", NamespaceLabel: "exported_namespace", PodLabel: "exported_pod", UnitBytes: 1}, q,
			`max(max_over_time(DCGM_FI_DEV_FB_USED{exported_namespace="ml",exported_pod="train-a"}[91s]))`},
		{"hostile names are quoted, and pods' regexp characters escaped", DefaultMemory(), hostile,
			`max(max_over_time(container_memory_working_set_bytes{namespace="ml\"} or vector(1)",` +
				`pod=~"a\\.b|new\nline|q\"x\\\\y|x\\|y",container="c\",x=\""}[1s]))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.q.check(); err != nil {
				t.Fatalf("check() = %v", err)
			}
			if got := tt.series.Expr(&tt.q); got != tt.want {
				t.Errorf("Expr() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestQueryCheck(t *testing.T) {
	ok := Query{Namespace: "ml", Pods: []string{"p"}, Container: "c", Start: t0, End: t0.Add(time.Minute)}
	tests := []struct {
		name string
		edit func(*Query)
		want string // "" for valid
	}{
		{"valid", func(*Query) {}, ""},
		{"an instant run", func(q *Query) { q.End = q.Start }, ""},
		{"no namespace", func(q *Query) { q.Namespace = "" }, "namespace: empty"},
		{"no container", func(q *Query) { q.Container = "" }, "container: empty"},
		{"no pods", func(q *Query) { q.Pods = nil }, "pods: none"},
		{"too many pods", func(q *Query) { q.Pods = make([]string, MaxPods+1) }, "pods: 65"},
		{"an empty pod name", func(q *Query) { q.Pods = []string{"p", ""} }, "pods[1]: empty"},
		{"a long name", func(q *Query) { q.Pods = []string{strings.Repeat("p", 513)} }, "pods[0]: 513 bytes"},
		{"not UTF-8", func(q *Query) { q.Namespace = "m\xffl" }, "namespace: not UTF-8"},
		{"no end", func(q *Query) { q.End = time.Time{} }, "start, end"},
		{"backwards", func(q *Query) { q.End = q.Start.Add(-time.Second) }, "before start"},
		{"too long", func(q *Query) { q.End = q.Start.Add(400 * 24 * time.Hour) }, "longer than a run"},
		{"negative GPUs", func(q *Query) { q.GPUs = -1 }, "gpus -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := ok
			tt.edit(&q)
			err := q.check()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("check() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSeriesValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Series)
		want string
	}{
		{"default", func(*Series) {}, ""},
		{"off", func(s *Series) { *s = Series{} }, ""},
		{"no container label", func(s *Series) { s.ContainerLabel = "" }, ""},
		{"a colon in the metric", func(s *Series) { s.Metric = "job:memory:max" }, ""},
		{"a selector for a metric", func(s *Series) { s.Metric = `m{a="b"}` }, "metric:"},
		{"a metric starting with a digit", func(s *Series) { s.Metric = "1m" }, "metric:"},
		{"a label with a quote", func(s *Series) { s.PodLabel = `pod"` }, "podLabel:"},
		{"no namespace label", func(s *Series) { s.NamespaceLabel = "" }, "namespaceLabel:"},
		{"a reserved label", func(s *Series) { s.ContainerLabel = "__name__" }, "containerLabel:"},
		{"one label twice", func(s *Series) { s.ContainerLabel = "pod" }, "each a different label"},
		{"no unit", func(s *Series) { s.UnitBytes = 0 }, "unitBytes:"},
		{"a NaN unit", func(s *Series) { s.UnitBytes = math.NaN() }, "unitBytes:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultMemory()
			tt.edit(&s)
			err := s.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPeakBytes(t *testing.T) {
	tests := []struct {
		name  string
		v     float64
		unit  float64
		bound int64
		want  int64
		bad   bool
	}{
		{"bytes", 7516192768, 1, 1 << 50, 7516192768, false},
		{"MiB", 39000, 1 << 20, 1 << 50, 39000 << 20, false},
		{"rounded", 1.6, 1, 10, 2, false},
		{"zero is unknown", 0, 1, 10, 0, false},
		{"at the bound", 10, 1, 10, 10, false},
		{"over the bound", 11, 1, 10, 0, true},
		{"over the bound once in bytes", 2, 1 << 20, 1 << 20, 0, true},
		{"NaN", math.NaN(), 1, 10, 0, true},
		{"+Inf", math.Inf(1), 1, 10, 0, true},
		{"-Inf", math.Inf(-1), 1, 10, 0, true},
		{"negative", -1, 1, 10, 0, true},
		{"past int64", 1e300, 1, 1 << 50, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := peakBytes("memory", tt.v, tt.unit, tt.bound)
			if got != tt.want || (err != nil) != tt.bad {
				t.Errorf("peakBytes(%g, %g, %d) = %d, %v; want %d, bad %v", tt.v, tt.unit, tt.bound, got, err, tt.want, tt.bad)
			}
		})
	}
}

func TestBounds(t *testing.T) {
	if m, g, d := bounds(&Query{}); m != 1<<50 || g != 1<<50 || d != 1<<50 {
		t.Errorf("bounds without a GPU model = %d, %d, %d; want 1 PiB each", m, g, d)
	}
	if _, g, _ := bounds(&Query{GPUMemoryBytes: 40 << 30}); g != 50<<30 {
		t.Errorf("GPU bound of a 40 GiB GPU = %d, want 50 GiB", g)
	}
}
