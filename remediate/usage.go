package remediate

import (
	"context"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/autofix/autofix/failure"
)

// UsageSource measures what a run's pods used while they ran: a metrics system
// (Prometheus, in serve: package telemetry). The Kubernetes API has no peaks.
type UsageSource interface {
	// Usage returns the peaks of q's run that it found; a peak it has no data for
	// is 0 (unknown). It must return within a bounded time whatever the metrics
	// system does (the watcher waits for it); err says why peaks are missing, and
	// the watcher reports the run without them.
	Usage(ctx context.Context, q UsageQuery) (failure.Usage, error)
}

// UsageQuery is a run whose peaks are wanted: one Job's pods that ran.
type UsageQuery struct {
	Namespace string
	// Pods are the names of the pods that started, the latest MaxUsagePods of them.
	Pods []string
	// Container is the main container's name (annotation autofix.io/container, or
	// the first).
	Container string
	// Start is when the first pod started, End when the last one ended.
	Start, End time.Time
	// GPUs is how many GPUs the main container holds, of model GPUType (the node
	// selector's value of the GPU label; "" if none), with GPUMemoryBytes of memory
	// each (0: unknown).
	GPUs           int
	GPUType        string
	GPUMemoryBytes int64
}

// MaxUsagePods bounds the pods of one UsageQuery: a Job that ran more (retries
// within it, a parallel Job) is measured on its latest ones.
const MaxUsagePods = 64

// usageQuery is the query of job's run from its pods (the watcher's cache holds
// them): those that started, from the first start to the last end — end, the
// Job's, for a pod that has none recorded. ok is false when nothing ran, or the run
// has not ended.
func usageQuery(job *batchv1.Job, pods []*corev1.Pod, end time.Time, gpuLabel string, cat *failure.Catalogue) (UsageQuery, bool) {
	spec := &job.Spec.Template.Spec
	c, err := mainContainer(spec, job.Annotations)
	if err != nil {
		return UsageQuery{}, false
	}
	q := UsageQuery{Namespace: job.Namespace, Container: c.Name}
	var ran []*corev1.Pod
	for _, p := range pods {
		if !podStart(p).IsZero() {
			ran = append(ran, p)
		}
	}
	slices.SortFunc(ran, func(a, b *corev1.Pod) int { return podStart(a).Compare(podStart(b)) })
	if len(ran) > MaxUsagePods {
		ran = ran[len(ran)-MaxUsagePods:]
	}
	for _, p := range ran {
		to := podEnd(p)
		if to.IsZero() {
			to = end
		}
		if to.IsZero() {
			return UsageQuery{}, false // still running: its peak is not known yet
		}
		q.Pods = append(q.Pods, p.Name)
		if from := podStart(p); q.Start.IsZero() || from.Before(q.Start) {
			q.Start = from
		}
		if to.After(q.End) {
			q.End = to
		}
	}
	if len(q.Pods) == 0 || q.End.Before(q.Start) {
		return UsageQuery{}, false
	}
	res := resourcesOf(c, gpuLabel, spec)
	q.GPUs, q.GPUType = res.GPU, res.GPUType
	if q.GPUs > 0 && q.GPUType != "" {
		if cat != nil {
			q.GPUMemoryBytes = cat.GPUMemory(q.GPUType)
		} else {
			q.GPUMemoryBytes = failure.GPUMemoryBytes(q.GPUType)
		}
	}
	return q, true
}

// runUsage measures one Job's run once, for its event and its outcome both (an
// attempt autofix created that failed has both).
type runUsage struct {
	done  bool
	usage failure.Usage
}

// measure returns the peaks of job's run, which ended at end (its condition's
// time), looked up through the watcher's UsageSource once for u (nil: every time).
// Without a source, or a run to measure, the peaks are unknown (zero); so they are
// when the lookup fails, which is logged, and the run is reported without them.
func (w *Watcher) measure(ctx context.Context, u *runUsage, job *batchv1.Job, pods []*corev1.Pod, end time.Time) failure.Usage {
	if u != nil && u.done {
		return u.usage
	}
	var usage failure.Usage
	if q, ok := usageQuery(job, pods, end, w.o.GPUTypeLabel, w.o.Catalogue); ok && w.o.Usage != nil {
		got, err := w.o.Usage.Usage(ctx, q)
		if err != nil {
			w.o.Log.Debug("watch: usage peaks left out", "job", job.Namespace+"/"+job.Name, "err", err)
		}
		usage = saneUsage(got)
	}
	if u != nil {
		u.done, u.usage = true, usage
	}
	return usage
}

// saneUsage drops peaks no run can have (a source's fault): negative, or past
// failure.MaxMemoryBytes, which events and outcomes refuse.
func saneUsage(u failure.Usage) failure.Usage {
	for _, p := range []*int64{&u.PeakMemoryBytes, &u.PeakGPUMemoryBytes, &u.PeakEphemeralStorageBytes} {
		if *p < 0 || *p > failure.MaxMemoryBytes {
			*p = 0
		}
	}
	return u
}

// peakAttrs are the known peaks of u, for a log line.
func peakAttrs(u failure.Usage) []any {
	var attrs []any
	for _, p := range []struct {
		key   string
		bytes int64
	}{{"peakMemory", u.PeakMemoryBytes}, {"peakGPUMemory", u.PeakGPUMemoryBytes}, {"peakEphemeralStorage", u.PeakEphemeralStorageBytes}} {
		if p.bytes > 0 {
			attrs = append(attrs, p.key, failure.FormatBytes(p.bytes))
		}
	}
	return attrs
}
