package remediate

import (
	"math"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
)

// priceCatalogue has round prices, so that the wanted costs below are sums anyone
// can check: $1 a core-hour, $0.5 a GiB-hour of memory, $0.25 a GiB-hour of local
// storage, $10 and $20 a GPU-hour.
var priceCatalogue = failure.Catalogue{CPUPerCoreHour: 1, MemoryPerGiBHour: 0.5, EphemeralPerGiBHour: 0.25,
	GPUs: []failure.GPUModel{{Name: "gpu-a", MemoryGiB: 40, PerHour: 10}, {Name: "gpu-b", MemoryGiB: 80, PerHour: 20}}}

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// at is t0 plus minutes, as the API reports times.
func at(minutes float64) metav1.Time {
	return metav1.NewTime(t0.Add(time.Duration(minutes * float64(time.Minute))))
}

func atp(minutes float64) *metav1.Time { t := at(minutes); return &t }

// ctr is a container with requests and limits ("cpu=2,memory=8Gi").
func ctr(name, requests, limits string) corev1.Container {
	return corev1.Container{Name: name, Image: name + ":1", Resources: corev1.ResourceRequirements{
		Requests: resourceList(requests), Limits: resourceList(limits)}}
}

func resourceList(s string) corev1.ResourceList {
	if s == "" {
		return nil
	}
	out := corev1.ResourceList{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[corev1.ResourceName(k)] = resource.MustParse(v)
	}
	return out
}

// ranPod is a pod that started at from and whose one container ended at to
// (minutes after t0), in phase.
func ranPod(name string, phase corev1.PodPhase, from, to float64, containers ...corev1.Container) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml"},
		Spec:   corev1.PodSpec{Containers: containers},
		Status: corev1.PodStatus{Phase: phase, StartTime: atp(from)}}
	for _, c := range containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, StartedAt: at(from), FinishedAt: at(to)}}})
	}
	return p
}

func pricedJob(succeeded, failed int32) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: "ml", UID: "u1"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{ctr("main", "cpu=2", "memory=8Gi")}}}},
		Status: batchv1.JobStatus{Succeeded: succeeded, Failed: failed, StartTime: atp(0)}}
}

func TestPriceJob(t *testing.T) {
	main := ctr("main", "cpu=2,memory=4Gi", "memory=8Gi") // priced as the optimizer sizes it: 2 cores, 8Gi
	gpu := func(n, model string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits[ResourceGPU] = resource.MustParse(n)
			if model != "" {
				p.Spec.NodeSelector = map[string]string{"nvidia.com/gpu.product": model}
			}
		}
	}
	pod := func(phase corev1.PodPhase, from, to float64, edits ...func(*corev1.Pod)) *corev1.Pod {
		p := ranPod("train-x", phase, from, to, *main.DeepCopy())
		for _, e := range edits {
			e(p)
		}
		return p
	}
	noStart := func(p *corev1.Pod) {
		p.Status.StartTime = nil
		p.Status.ContainerStatuses = nil
	}
	tests := []struct {
		name     string
		job      *batchv1.Job
		pods     []*corev1.Pod
		end      float64 // the Job's end, minutes after t0; <0: it has not ended
		cat      *failure.Catalogue
		want     float64
		unpriced string // a part of the note; "" wants none
	}{
		{name: "one container, an hour", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60)}, want: 2 + 4},
		{name: "from the pod's start, not its container's: image pull and init time hold the node too", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60, func(p *corev1.Pod) {
				p.Status.ContainerStatuses[0].State.Terminated.StartedAt = at(30)
			})}, want: 6},
		{name: "no start time: nothing ran, priced 0 and said so", job: pricedJob(0, 1), end: 10,
			pods: []*corev1.Pod{pod(corev1.PodFailed, 0, 0, noStart)}, unpriced: "no pod of the Job started"},
		{name: "no pod start time: the earliest container start stands for it", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60, func(p *corev1.Pod) {
				p.Status.StartTime = nil
				p.Status.ContainerStatuses[0].State.Terminated.StartedAt = at(30)
			})}, want: 3},
		{name: "several containers: their sum", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{ranPod("train-x", corev1.PodSucceeded, 0, 60, main,
				ctr("logger", "cpu=500m,memory=1Gi", ""), ctr("proxy", "cpu=1", "cpu=2,memory=2Gi"))},
			want: (2 + 0.5 + 2) + (8+1+2)*0.5},
		{name: "an init container bigger than the rest counts alone; a sidecar counts with both", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60, func(p *corev1.Pod) {
				always := corev1.ContainerRestartPolicyAlways
				sidecar := ctr("mesh", "cpu=1,memory=1Gi", "")
				sidecar.RestartPolicy = &always
				p.Spec.InitContainers = []corev1.Container{sidecar, ctr("fetch", "cpu=6,memory=2Gi", "")}
			})},
			// running: 2+1 cores, 8+1 GiB; the fetch step: 6+1 cores, 2+1 GiB.
			want: 7 + 9*0.5},
		{name: "pod-level resources stand for the containers'; overhead adds", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60, func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Limits: resourceList("memory=16Gi")}
				p.Spec.Overhead = resourceList("cpu=250m,memory=512Mi")
			})}, want: 2.25 + 16.5*0.5},
		{name: "local storage", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60, func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("100Gi")
			})}, want: 6 + 25},
		{name: "GPUs from the extended resource, of the node selector's model", job: pricedJob(1, 0), end: 31,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 30, gpu("2", "gpu-b"))}, want: (2 + 4 + 2*20) / 2.0},
		{name: "GPUs of a model the catalogue does not list are left out, and said so", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60, gpu("2", "gpu-z"))}, want: 6,
			unpriced: `pod train-x: its 2 GPUs are not priced: the catalogue has no GPU model "gpu-z"`},
		{name: "GPUs of no named model are left out, and said so", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60, gpu("1", ""))}, want: 6,
			unpriced: "node selector names no GPU model"},
		{name: "every pod of the Job: retries within it add up", job: pricedJob(0, 2), end: 100,
			pods: []*corev1.Pod{pod(corev1.PodFailed, 0, 30), ranPod("train-y", corev1.PodFailed, 40, 100, main)}, want: 3 + 6},
		{name: "a pod killed with its Job, its status not updated, ends with the Job", job: pricedJob(0, 1), end: 45,
			pods: []*corev1.Pod{pod(corev1.PodRunning, 0, 0, func(p *corev1.Pod) {
				p.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(0)}}
			})}, want: 4.5},
		{name: "a pod still waiting when the Job has not ended is not priced", job: pricedJob(0, 0), end: -1,
			pods:     []*corev1.Pod{pod(corev1.PodPending, 0, 0, func(p *corev1.Pod) { p.Status.ContainerStatuses = nil })},
			unpriced: "pod train-x has not ended"},
		{name: "pods deleted before pricing are said to be missing", job: pricedJob(0, 3), end: 100,
			pods: []*corev1.Pod{pod(corev1.PodFailed, 0, 60)}, want: 6, unpriced: "2 of the Job's finished pods were not there to price"},
		{name: "no pod left: the Job's times and its pod template", job: pricedJob(0, 1), end: 90, want: 9},
		{name: "no pod left and no start time: 0, said so", end: 90, unpriced: "no status.startTime",
			job: func() *batchv1.Job { j := pricedJob(0, 0); j.Status.StartTime = nil; return j }()},
		{name: "no pod left of a Job that ran several: 0, said so", job: pricedJob(0, 3), end: 90, unpriced: "it ran 3 of them"},
		{name: "no pod left of a parallel Job: 0, said so", end: 90, unpriced: "parallelism 4",
			job: func() *batchv1.Job { j := pricedJob(0, 1); four := int32(4); j.Spec.Parallelism = &four; return j }()},
		{name: "an end before the start (a clock gone wrong) is not priced", job: pricedJob(1, 0), end: 61,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 60, 0)}, unpriced: "ended (2026-03-01T08:00:00Z) before it started (2026-03-01T09:00:00Z)"},
		{name: "a price past the bound of one run is not recorded", job: pricedJob(1, 0), end: 61,
			cat:  &failure.Catalogue{CPUPerCoreHour: 1e12},
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60)}, unpriced: "past the 1e+09-dollar bound"},
		{name: "a catalogue with no prices", job: pricedJob(1, 0), end: 61, cat: &failure.Catalogue{}, want: 0,
			pods: []*corev1.Pod{pod(corev1.PodSucceeded, 0, 60)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := tt.cat
			if cat == nil {
				cat = &priceCatalogue
			}
			var end time.Time
			if tt.end >= 0 {
				end = at(tt.end).Time
			}
			got, note := priceJob(cat, tt.job, tt.pods, end, "nvidia.com/gpu.product")
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("cost = %v, want %v (note %q)", got, tt.want, note)
			}
			if tt.unpriced == "" && note != "" || !strings.Contains(note, tt.unpriced) {
				t.Errorf("unpriced = %q, want %q", note, tt.unpriced)
			}
		})
	}
}

func TestPriceJobWithoutACatalogue(t *testing.T) {
	got, note := priceJob(nil, pricedJob(1, 0), []*corev1.Pod{ranPod("p", corev1.PodSucceeded, 0, 60, ctr("main", "cpu=1", ""))}, at(61).Time, "")
	if got != 0 || note == "" {
		t.Errorf("priceJob without a catalogue = %v, %q; want 0 and a reason", got, note)
	}
}

// TestPriceJobNotesAreBounded: a Job with many pods that cannot be priced says so in
// a note short enough for an event (failure.MaxValueLength).
func TestPriceJobNotesAreBounded(t *testing.T) {
	var pods []*corev1.Pod
	for i := range 500 {
		p := ranPod(strings.Repeat("p", 240)+string(rune('a'+i%26)), corev1.PodRunning, 0, 0, ctr("main", "cpu=1", ""))
		pods = append(pods, p)
	}
	_, note := priceJob(&priceCatalogue, pricedJob(0, 0), pods, time.Time{}, "")
	if len(note) > failure.MaxValueLength || !strings.HasSuffix(note, "and 497 more") {
		t.Errorf("note of %d bytes ending %q; want at most %d, the rest counted", len(note), note[max(0, len(note)-20):], failure.MaxValueLength)
	}
}

// TestPriceJobRefusesRequestsNoRunHas: a pod spec asking for more than any job can
// hold (a typo, or a forgery) is not priced, and the note says so — its sum must not
// wrap around int64 into a small, plausible price.
func TestPriceJobRefusesRequestsNoRunHas(t *testing.T) {
	// Three containers of a third of 2^64 bytes each: their sum wraps to 2 bytes.
	third := "memory=6148914691236517206"
	tests := []struct {
		name string
		pod  *corev1.Pod
	}{
		{"a sum that wraps around", ranPod("train-x", corev1.PodSucceeded, 0, 60,
			ctr("a", "cpu=1", third), ctr("b", "cpu=1", third), ctr("c", "cpu=1", third))},
		{"memory past a petabyte, cheap enough to pass the cost bound", ranPod("train-x", corev1.PodSucceeded, 0, 1,
			ctr("main", "cpu=1", "memory=2Pi"))},
		{"more cores than any job", ranPod("train-x", corev1.PodSucceeded, 0, 1,
			ctr("main", "cpu=200000", ""))},
		{"a quantity past int64, which Quantity.Value makes 0", ranPod("train-x", corev1.PodSucceeded, 0, 60,
			ctr("main", "cpu=1", "memory=1e30"))},
		{"containers each within the bounds whose sum is past int64", func() *corev1.Pod {
			var cs []corev1.Container
			for range 8200 { // 8200 PiB > 2^63 bytes
				cs = append(cs, ctr("c", "", "memory=1Pi"))
			}
			return ranPod("train-x", corev1.PodSucceeded, 0, 60, cs...)
		}()},
		{"cores whose millicores are past int64", ranPod("train-x", corev1.PodSucceeded, 0, 60,
			ctr("main", "cpu=1", "cpu=1e18"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, note := priceJob(&priceCatalogue, pricedJob(1, 0), []*corev1.Pod{tt.pod}, at(61).Time, "")
			if got != 0 || !strings.Contains(note, "pod train-x: it asks for more than any job holds") {
				t.Errorf("priceJob = %v, %q; want 0 and a note saying pod train-x asks for more than any job holds", got, note)
			}
		})
	}
	job := pricedJob(0, 1)
	job.Spec.Template.Spec.Containers = []corev1.Container{ctr("a", "", third), ctr("b", "", third), ctr("c", "", third)}
	if got, note := priceJob(&priceCatalogue, job, nil, at(61).Time, ""); got != 0 || !strings.Contains(note, "its pod: it asks for more than any job holds") {
		t.Errorf("priceJob of a Job with no pod left = %v, %q; want 0 and a note saying its pod asks for more than any job holds", got, note)
	}
}

// TestPriceJobBoundsAPodByItsJob: a pod's times come from its node's clock; one gone
// wrong (a node that booted in 1970 and synced its clock mid-run, a status written
// by hand) must not price a run of an hour as decades. A pod runs within its Job's
// life: not before the Job was created, not after it ended.
func TestPriceJobBoundsAPodByItsJob(t *testing.T) {
	main := ctr("main", "cpu=2", "memory=8Gi") // $6 an hour
	pod := func(from, to time.Time) *corev1.Pod {
		p := ranPod("train-x", corev1.PodSucceeded, 0, 60, main)
		p.Status.StartTime = &metav1.Time{Time: from}
		p.Status.ContainerStatuses[0].State.Terminated.StartedAt = metav1.Time{Time: from}
		p.Status.ContainerStatuses[0].State.Terminated.FinishedAt = metav1.Time{Time: to}
		return p
	}
	tests := []struct {
		name     string
		from, to time.Time
		want     float64
	}{
		{"started in 1970", time.Unix(0, 0), at(60).Time, 6},
		{"started before the epoch", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), at(60).Time, 6},
		{"ended in 2200", at(0).Time, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), 6.1},
		{"a clock a second off either way changes a second", at(0).Add(-time.Second), at(61).Add(time.Second), 6.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := pricedJob(1, 0)
			job.CreationTimestamp = at(0)
			got, note := priceJob(&priceCatalogue, job, []*corev1.Pod{pod(tt.from, tt.to)}, at(61).Time, "")
			if math.Abs(got-tt.want) > 1e-9 || note != "" {
				t.Errorf("priceJob = %v, %q; want %v, within the Job's life (created %s, ended %s)", got, note, tt.want, stamp(at(0).Time), stamp(at(61).Time))
			}
		})
	}
}

// TestPriceJobEndsALostPodWhenItWasDeleted: a pod on a node that stopped answering
// is deleted (the taint manager, after its toleration) but keeps its last status,
// Running, until the node comes back or is removed — often past the end of its Job,
// which ran a replacement meanwhile. It ended when it was deleted, not when the Job
// did: priced to the Job's end, a node lost an hour into a ten-hour run would be paid
// for twice over the nine hours the replacement ran.
func TestPriceJobEndsALostPodWhenItWasDeleted(t *testing.T) {
	main := ctr("main", "cpu=2", "memory=8Gi") // $6 an hour
	lost := ranPod("train-a", corev1.PodRunning, 0, 0, main)
	lost.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(0)}}
	lost.DeletionTimestamp = atp(65) // the node stopped answering at 60
	replacement := ranPod("train-b", corev1.PodSucceeded, 61, 600, main)
	job := pricedJob(1, 1)
	got, note := priceJob(&priceCatalogue, job, []*corev1.Pod{lost, replacement}, at(601).Time, "")
	if want := (65.0 + 539) / 60 * 6; math.Abs(got-want) > 1e-9 || note != "" {
		t.Errorf("priceJob = %v, %q; want %v: the lost pod to its deletion (65 min), the replacement's 539 min", got, note, want)
	}
	// A pod killed with its Job (a deadline) is deleted with a grace period after the
	// Job's end: it still ends when the Job did.
	killed := ranPod("train-c", corev1.PodRunning, 0, 0, main)
	killed.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(0)}}
	killed.DeletionTimestamp = atp(45.5)
	if got, note := priceJob(&priceCatalogue, pricedJob(0, 1), []*corev1.Pod{killed}, at(45).Time, ""); math.Abs(got-4.5) > 1e-9 || note != "" {
		t.Errorf("priceJob of a pod killed with its Job = %v, %q; want 4.5, to the Job's end", got, note)
	}
}
