package simcluster

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The series the simulated nodes expose for their pods, as a real cluster's
// exporters name them (the defaults of package telemetry): cAdvisor's, through the
// kubelet, and the DCGM exporter's. A pod's series holds its peak (Outcome.Peaks)
// from its start to its end.
const (
	// MetricMemory is the working set of a container, in bytes.
	MetricMemory = "container_memory_working_set_bytes"
	// MetricGPUMemory is the framebuffer memory in use on one GPU, in MiB.
	MetricGPUMemory = "DCGM_FI_DEV_FB_USED"
	// MetricStorage is the local storage a container has written, in bytes.
	MetricStorage = "container_fs_usage_bytes"
)

// maxUsage bounds the pods whose series the kubelet keeps: past it, those that
// ended first go (as a Prometheus's retention drops old series).
const maxUsage = 10_000

// podUsage is the series of one pod's main container.
type podUsage struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container"`
	Node      string `json:"node"`
	GPUs      int    `json:"gpus,omitempty"`
	// Start is when it started, to the second below (the API shows times to the
	// second); End when it ended, zero while it runs.
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
	Peaks Peaks     `json:"peaks"`
}

// started records that pod's main container started on node at, with the peaks
// its truth gives it.
func (k *Kubelet) started(pod *corev1.Pod, node string, at time.Time, pk Peaks) {
	if pk == (Peaks{}) {
		return
	}
	c := &pod.Spec.Containers[0]
	gpus := 0
	if q, ok := c.Resources.Limits["nvidia.com/gpu"]; ok {
		gpus = int(min(q.Value(), 64))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.usage[pod.Namespace+"/"+pod.Name] = &podUsage{Namespace: pod.Namespace, Pod: pod.Name, Container: c.Name, Node: node,
		GPUs: gpus, Start: at.Truncate(time.Second), Peaks: pk}
	if len(k.usage) > maxUsage {
		k.dropOldestUsage()
	}
}

// ended records that pod's main container ended at.
func (k *Kubelet) ended(pod *corev1.Pod, at time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if u := k.usage[pod.Namespace+"/"+pod.Name]; u != nil {
		u.End = at
	}
}

// dropOldestUsage drops the tenth of the series that ended first. k.mu is held.
func (k *Kubelet) dropOldestUsage() {
	var done []*podUsage
	for _, u := range k.usage {
		if !u.End.IsZero() {
			done = append(done, u)
		}
	}
	slices.SortFunc(done, func(a, b *podUsage) int { return a.End.Compare(b.End) })
	for _, u := range done[:min(len(done), maxUsage/10)] {
		delete(k.usage, u.Namespace+"/"+u.Pod)
	}
}

func (k *Kubelet) allUsage() []podUsage {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]podUsage, 0, len(k.usage))
	for _, u := range k.usage {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b podUsage) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	return out
}

func (k *Kubelet) setUsage(us []podUsage) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range us {
		u := us[i]
		k.usage[u.Namespace+"/"+u.Pod] = &u
	}
}

// series is one sample of a series: its labels and its value in its metric's unit.
type series struct {
	labels map[string]string
	value  float64
}

// seriesOf are u's series of metric, from what it used.
func (u *podUsage) seriesOf(metric string) []series {
	labels := func(extra ...string) map[string]string {
		l := map[string]string{"namespace": u.Namespace, "pod": u.Pod, "container": u.Container}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	switch {
	case metric == MetricMemory && u.Peaks.MemoryBytes > 0:
		return []series{{labels("node", u.Node), float64(u.Peaks.MemoryBytes)}}
	case metric == MetricStorage && u.Peaks.StorageBytes > 0:
		return []series{{labels("node", u.Node, "device", "/dev/nvme0n1p1"), float64(u.Peaks.StorageBytes)}}
	case metric == MetricGPUMemory && u.Peaks.GPUMemoryBytes > 0:
		var out []series
		for i := range u.GPUs {
			// The exporter reports whole MiB.
			mib := math.Round(float64(u.Peaks.GPUMemoryBytes) / (1 << 20))
			out = append(out, series{labels("gpu", strconv.Itoa(i), "Hostname", u.Node), mib})
		}
		return out
	}
	return nil
}

// during reports whether u ran at some time in [from, to].
func (u *podUsage) during(from, to time.Time) bool {
	return !u.Start.After(to) && (u.End.IsZero() || !u.End.Before(from))
}
