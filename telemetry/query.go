package telemetry

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/autofix/autofix/failure"
)

// Series is where the samples of one peak are: a metric, and the labels that name
// the namespace, the pod and the container each sample is of.
type Series struct {
	// Metric is the metric's name; empty: this peak is not looked up.
	Metric string
	// NamespaceLabel and PodLabel are the labels that hold the pod's namespace and
	// name.
	NamespaceLabel, PodLabel string
	// ContainerLabel is the label that holds the container's name; empty: the
	// samples are the pod's, whichever container they are of.
	ContainerLabel string
	// UnitBytes is how many bytes one unit of the metric is: 1 for a metric in
	// bytes, 1<<20 for one in MiB.
	UnitBytes float64
}

// DefaultMemory is the working set of a container, as cAdvisor reports it through
// the kubelet (kube-prometheus scrapes it from /metrics/cadvisor): bytes of memory
// in use that the kernel cannot reclaim, which is what the OOM killer weighs
// against the limit.
func DefaultMemory() Series {
	return Series{Metric: "container_memory_working_set_bytes", NamespaceLabel: "namespace", PodLabel: "pod",
		ContainerLabel: "container", UnitBytes: 1}
}

// DefaultGPUMemory is the framebuffer memory in use on one GPU, as NVIDIA's DCGM
// exporter reports it (in MiB), one series per GPU, labelled with the pod that holds
// the GPU (its Kubernetes mapping, on by default).
func DefaultGPUMemory() Series {
	return Series{Metric: "DCGM_FI_DEV_FB_USED", NamespaceLabel: "namespace", PodLabel: "pod", UnitBytes: 1 << 20}
}

// DefaultEphemeralStorage is the bytes a container has written to its node's
// filesystems (its writable layer and logs), as cAdvisor reports it through the
// kubelet (kube-prometheus keeps it among the /metrics/cadvisor series).
func DefaultEphemeralStorage() Series {
	return Series{Metric: "container_fs_usage_bytes", NamespaceLabel: "namespace", PodLabel: "pod",
		ContainerLabel: "container", UnitBytes: 1}
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// ValidMetricName reports whether s is a metric name Prometheus accepts (and that
// can stand in a query as it is).
func ValidMetricName(s string) bool { return metricName.MatchString(s) }

// ValidLabelName reports whether s is a label name Prometheus accepts that is not
// reserved for its own use (names starting with "__").
func ValidLabelName(s string) bool {
	return labelName.MatchString(s) && !strings.HasPrefix(s, "__")
}

// Validate reports the first problem of a series, naming its field (metric,
// namespaceLabel, podLabel, containerLabel, unitBytes). A series without a metric
// is off, and valid.
func (s Series) Validate() error {
	if s.Metric == "" {
		return nil
	}
	if !ValidMetricName(s.Metric) {
		return fmt.Errorf("metric: %q is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", s.Metric)
	}
	for _, l := range []struct{ field, name string }{{"namespaceLabel", s.NamespaceLabel}, {"podLabel", s.PodLabel},
		{"containerLabel", s.ContainerLabel}} {
		if l.name == "" && l.field == "containerLabel" {
			continue
		}
		if !ValidLabelName(l.name) {
			return fmt.Errorf("%s: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)", l.field, l.name)
		}
	}
	switch {
	case s.NamespaceLabel == s.PodLabel || s.ContainerLabel == s.NamespaceLabel || s.ContainerLabel == s.PodLabel:
		return fmt.Errorf("namespaceLabel, podLabel, containerLabel: %q, %q, %q: each a different label",
			s.NamespaceLabel, s.PodLabel, s.ContainerLabel)
	case !(s.UnitBytes >= 1 && s.UnitBytes <= 1<<40): // also NaN
		return fmt.Errorf("unitBytes: %g, want 1 (bytes) to 2^40", s.UnitBytes)
	}
	return nil
}

// MaxPods bounds the pods of one lookup: the most recent ones of a run that ran
// more are the ones looked at.
const MaxPods = 64

// Query is one run whose peaks are wanted: the pods it ran (in one namespace), its
// main container, and when it ran.
type Query struct {
	Namespace string
	// Pods are the names of the run's pods that ran (at most MaxPods).
	Pods []string
	// Container is the name of the main container.
	Container string
	// Start and End bound the run: from its first pod's start to its last pod's end.
	Start, End time.Time
	// GPUs is how many GPUs each pod holds; with none, no GPU peak is looked up.
	GPUs int
	// GPUMemoryBytes is the memory of one of its GPUs, in bytes (0: unknown); a GPU
	// peak above it (by more than a quarter) is refused as a bad value.
	GPUMemoryBytes int64
}

// check reports what makes q one that cannot be asked.
func (q *Query) check() error {
	if err := checkName("namespace", q.Namespace); err != nil {
		return err
	}
	if err := checkName("container", q.Container); err != nil {
		return err
	}
	switch {
	case len(q.Pods) == 0:
		return errors.New("pods: none")
	case len(q.Pods) > MaxPods:
		return fmt.Errorf("pods: %d, at most %d", len(q.Pods), MaxPods)
	case q.Start.IsZero() || q.End.IsZero():
		return errors.New("start, end: both required")
	case q.End.Before(q.Start):
		return fmt.Errorf("end %s is before start %s", q.End.UTC().Format(time.RFC3339), q.Start.UTC().Format(time.RFC3339))
	case q.End.Sub(q.Start).Seconds() > failure.MaxDurationSeconds:
		return fmt.Errorf("start to end: %s, longer than a run can last", q.End.Sub(q.Start))
	case q.GPUs < 0 || q.GPUMemoryBytes < 0:
		return fmt.Errorf("gpus %d, gpuMemoryBytes %d: want 0 or more", q.GPUs, q.GPUMemoryBytes)
	}
	for i, p := range q.Pods {
		if err := checkName(fmt.Sprintf("pods[%d]", i), p); err != nil {
			return err
		}
	}
	return nil
}

// checkName refuses an empty, over-long or not UTF-8 name. Anything else is quoted
// into the query as it is.
func checkName(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: empty", field)
	case len(s) > failure.MaxNameLength:
		return fmt.Errorf("%s: %d bytes, over the %d-byte limit", field, len(s), failure.MaxNameLength)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not UTF-8", field)
	}
	return nil
}

// Expr is the PromQL expression of s's peak over q's run, to be evaluated at
// q.End: the highest sample of any of its series (one per pod, container and, for
// GPUs, GPU) within the run,
//
//	max(max_over_time(METRIC{NS="...",POD="...",CONTAINER="..."}[Ns]))
//
// where the pod matcher is a regular expression (=~) of the pods' names, each
// escaped, when there are several. Every value is a quoted PromQL string (Go's
// escapes, which PromQL shares), so no name can end the string or add a matcher;
// regular-expression characters in a pod's name match only themselves. q must be
// valid (check).
func (s Series) Expr(q *Query) string {
	var b strings.Builder
	b.WriteString("max(max_over_time(")
	b.WriteString(s.Metric)
	b.WriteByte('{')
	b.WriteString(s.NamespaceLabel)
	b.WriteByte('=')
	b.WriteString(strconv.Quote(q.Namespace))
	b.WriteByte(',')
	b.WriteString(s.PodLabel)
	pods := slices.Clone(q.Pods)
	slices.Sort(pods)
	pods = slices.Compact(pods)
	if len(pods) == 1 {
		b.WriteByte('=')
		b.WriteString(strconv.Quote(pods[0]))
	} else {
		for i, p := range pods {
			pods[i] = regexp.QuoteMeta(p)
		}
		b.WriteString("=~")
		b.WriteString(strconv.Quote(strings.Join(pods, "|")))
	}
	if s.ContainerLabel != "" {
		b.WriteByte(',')
		b.WriteString(s.ContainerLabel)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(q.Container))
	}
	b.WriteString("}[")
	b.WriteString(strconv.FormatInt(rangeSeconds(q), 10))
	b.WriteString("s]))")
	return b.String()
}

// rangeSeconds is the run's length rounded up to a whole second, at least one.
func rangeSeconds(q *Query) int64 {
	return max(1, int64(math.Ceil(q.End.Sub(q.Start).Seconds())))
}
