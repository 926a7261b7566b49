package remediate

import (
	"fmt"
	"math"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/autofix/autofix/failure"
)

// Pricing a run on a cluster. A Job is one attempt, and it costs what its pods cost.
// A pod costs the catalogue's price of what it requested (podResources, priced by
// failure.Catalogue.Cost, the function the optimizer prices its candidates with) for
// as long as it held it: from its status.startTime — when a kubelet admitted it;
// from then on the node holds its requests, while images are pulled and init
// containers run too — to the latest finishedAt of its containers, when the last one
// ended. A pod of a finished Job that has no end of its own (killed with its Job, by
// a deadline, before its status said so) ends when the Job did, or when it was
// deleted if that is earlier (a pod lost with its node); no pod runs before
// its Job was created or after it ended (pricePod). The API gives these times to the
// second.

// maxNotes bounds the reasons an unpriced note lists; the rest are counted.
const maxNotes = 3

// priceJob prices the attempt job from its pods (those the watcher's cache still
// holds): dollars, and why that is 0 or leaves something out ("" when every pod was
// priced whole). end is when the Job finished (the time of its Complete or Failed
// condition), zero while it runs.
//
// When none of its pods is left, the Job's own times stand for its one pod's
// (status.startTime to end, which also counts the time the pod waited for a node); a
// Job that ran several pods is then not priced. A run with no start time at all is
// priced 0, and the note says so: nothing is guessed.
func priceJob(cat *failure.Catalogue, job *batchv1.Job, pods []*corev1.Pod, end time.Time, gpuLabel string) (float64, string) {
	if cat == nil {
		return 0, "no price catalogue to price it with"
	}
	if len(pods) == 0 {
		return priceJobAlone(cat, job, end, gpuLabel)
	}
	var (
		dollars float64
		notes   []string
		ran     int
	)
	for _, p := range pods {
		c, started, note := pricePod(cat, p, job.CreationTimestamp.Time, end, gpuLabel)
		dollars += c
		if started {
			ran++
		}
		if note != "" {
			notes = append(notes, note)
		}
	}
	if ran == 0 {
		notes = append(notes, "no pod of the Job started (none has a start time): nothing ran to price")
	}
	if gone := int(job.Status.Succeeded) + int(job.Status.Failed) - len(pods); gone > 0 {
		notes = append(notes, fmt.Sprintf("%d of the Job's finished pods were not there to price (deleted, or not seen yet)", gone))
	}
	return priced(dollars, notes)
}

// priceJobAlone prices a Job none of whose pods is left.
func priceJobAlone(cat *failure.Catalogue, job *batchv1.Job, end time.Time, gpuLabel string) (float64, string) {
	pods := int(job.Status.Succeeded) + int(job.Status.Failed)
	switch {
	case job.Status.StartTime == nil:
		return 0, "the Job started no pod (it has no status.startTime): nothing ran to price"
	case end.IsZero():
		return 0, "the Job has not ended, and none of its pods is left to price"
	case pods > 1 || job.Spec.Parallelism != nil && *job.Spec.Parallelism > 1:
		return 0, fmt.Sprintf("none of the Job's pods is left to price, and it ran %d of them (parallelism %d): its own times do not say how long each ran",
			pods, parallelism(job))
	case end.Before(job.Status.StartTime.Time):
		return 0, fmt.Sprintf("the Job ended (%s) before it started (%s)", stamp(end), stamp(job.Status.StartTime.Time))
	}
	spec := &job.Spec.Template.Spec
	res, note := boundedResources(spec, gpuLabel, "its pod")
	if note != "" {
		return 0, note
	}
	var notes []string
	if note := unpricedGPUs(cat, res, "its pod"); note != "" {
		notes = append(notes, note)
	}
	return priced(cat.Cost(res, end.Sub(job.Status.StartTime.Time).Seconds()), notes)
}

func parallelism(job *batchv1.Job) int32 {
	if job.Spec.Parallelism == nil {
		return 1
	}
	return *job.Spec.Parallelism
}

// pricePod prices one pod of a Job created at jobStart that ended at jobEnd (zero:
// it has not): what it cost, whether it started, and what its price leaves out.
//
// A pod runs within its Job's life, and is priced within it: its times come from its
// node's clock, which may be wrong (a node that booted in 1970 and set its clock
// mid-run; a status written by hand), and the Job's from the control plane's. A node
// clock a few seconds off moves the price by those seconds; one decades off does not
// make a run of an hour cost decades.
func pricePod(cat *failure.Catalogue, p *corev1.Pod, jobStart, jobEnd time.Time, gpuLabel string) (dollars float64, started bool, note string) {
	from := podStart(p)
	if from.IsZero() {
		return 0, false, "" // never admitted to a node: it held nothing
	}
	if from.Before(jobStart) {
		from = jobStart
	}
	to := podEnd(p)
	switch {
	case to.IsZero():
		to = jobEnd
		if d := p.DeletionTimestamp; d != nil && !to.IsZero() && d.Time.Before(to) {
			// Deleted, and no end recorded: a pod on a node that stopped answering
			// keeps its last status (Running) until the node is back or removed, often
			// past its Job, which ran a replacement meanwhile. It ended when it was
			// deleted (its deletionTimestamp: the request plus its grace period).
			to = d.Time
		}
	case !jobEnd.IsZero() && to.After(jobEnd):
		to = jobEnd
	}
	switch {
	case to.IsZero():
		return 0, true, fmt.Sprintf("pod %s has not ended", p.Name)
	case to.Before(from):
		return 0, true, fmt.Sprintf("pod %s ended (%s) before it started (%s)", p.Name, stamp(to), stamp(from))
	}
	res, note := boundedResources(&p.Spec, gpuLabel, "pod "+p.Name)
	if note != "" {
		return 0, true, note
	}
	return cat.Cost(res, to.Sub(from).Seconds()), true, unpricedGPUs(cat, res, "pod "+p.Name)
}

// podStart is when the pod started holding its requests on a node: its
// status.startTime, or else the earliest start of a container (a status written
// without it); zero if it never started.
func podStart(p *corev1.Pod) time.Time {
	if p.Status.StartTime != nil && !p.Status.StartTime.IsZero() {
		return p.Status.StartTime.Time
	}
	var t time.Time
	eachContainerStatus(p, func(cs *corev1.ContainerStatus) {
		for _, s := range []corev1.ContainerState{cs.State, cs.LastTerminationState} {
			var at time.Time
			switch {
			case s.Running != nil:
				at = s.Running.StartedAt.Time
			case s.Terminated != nil:
				at = s.Terminated.StartedAt.Time
			}
			if !at.IsZero() && (t.IsZero() || at.Before(t)) {
				t = at
			}
		}
	})
	return t
}

// podEnd is when a pod that has ended (Succeeded or Failed) ended: the latest
// finishedAt of its containers. Zero for a pod that has not ended, or whose
// containers' ends are not recorded.
func podEnd(p *corev1.Pod) time.Time {
	if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		return time.Time{}
	}
	var t time.Time
	eachContainerStatus(p, func(cs *corev1.ContainerStatus) {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	})
	return t
}

func eachContainerStatus(p *corev1.Pod, fn func(*corev1.ContainerStatus)) {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			fn(&list[i])
		}
	}
}

// podResources is what a pod asks a node for, each container counted as the
// optimizer counts the one it sizes (resourcesOf: its limit, else its request):
// the containers and sidecars (restartable init containers) together, or an init
// container with the sidecars started before it if that is more, plus the pod's
// overhead; pod-level CPU and memory, where set, stand for the containers'. GPUs are
// of the type the GPU label of its node selector names.
func podResources(spec *corev1.PodSpec, gpuLabel string) failure.Resources {
	var running, sidecars, inits failure.Resources
	for i := range spec.Containers {
		running = addResources(running, resourcesOf(&spec.Containers[i], gpuLabel, spec))
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		r := resourcesOf(c, gpuLabel, spec)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			running = addResources(running, r)
			sidecars = addResources(sidecars, r)
			continue
		}
		inits = maxResources(inits, addResources(r, sidecars))
	}
	res := maxResources(running, inits)
	if pl := spec.Resources; pl != nil {
		level := resourcesOf(&corev1.Container{Resources: *pl}, gpuLabel, spec)
		if sets(pl, corev1.ResourceCPU) {
			res.CPUMillis = level.CPUMillis
		}
		if sets(pl, corev1.ResourceMemory) {
			res.MemoryBytes = level.MemoryBytes
		}
	}
	overhead := resourcesOf(&corev1.Container{Resources: corev1.ResourceRequirements{Requests: spec.Overhead}}, gpuLabel, spec)
	res = addResources(res, overhead)
	res.GPUType = spec.NodeSelector[gpuLabel]
	return res
}

// sets reports whether r limits or requests the resource name.
func sets(r *corev1.ResourceRequirements, name corev1.ResourceName) bool {
	_, limited := r.Limits[name]
	_, requested := r.Requests[name]
	return limited || requested
}

// addResources is a plus b, each quantity saturating at the bounds of int64: a spec
// no API server would admit must not wrap around into a small, plausible price
// (boundedResources then refuses it).
func addResources(a, b failure.Resources) failure.Resources {
	a.CPUMillis = addSat(a.CPUMillis, b.CPUMillis)
	a.MemoryBytes = addSat(a.MemoryBytes, b.MemoryBytes)
	a.EphemeralStorageBytes = addSat(a.EphemeralStorageBytes, b.EphemeralStorageBytes)
	a.GPU = int(addSat(int64(a.GPU), int64(b.GPU)))
	return a
}

func addSat(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}

// boundedResources is podResources(spec), or a note when spec asks for more than
// any job holds (failure.MaxCPUMillis, MaxMemoryBytes, MaxGPUs), in one quantity or
// in all: a typo or a forgery, not a run to price. The quantities are checked as
// written, for Quantity.Value and MilliValue turn one past int64 into 0 or a
// negative number.
func boundedResources(spec *corev1.PodSpec, gpuLabel, who string) (failure.Resources, string) {
	bounds := []struct {
		name  corev1.ResourceName
		bound *resource.Quantity
	}{
		{corev1.ResourceCPU, resource.NewMilliQuantity(failure.MaxCPUMillis, resource.DecimalSI)},
		{corev1.ResourceMemory, resource.NewQuantity(failure.MaxMemoryBytes, resource.BinarySI)},
		{corev1.ResourceEphemeralStorage, resource.NewQuantity(failure.MaxMemoryBytes, resource.BinarySI)},
		{ResourceGPU, resource.NewQuantity(failure.MaxGPUs, resource.DecimalSI)},
	}
	lists := []corev1.ResourceList{spec.Overhead}
	if spec.Resources != nil {
		lists = append(lists, spec.Resources.Limits, spec.Resources.Requests)
	}
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range cs {
			lists = append(lists, cs[i].Resources.Limits, cs[i].Resources.Requests)
		}
	}
	for _, l := range lists {
		for _, b := range bounds {
			if q, ok := l[b.name]; ok && (q.Sign() < 0 || q.Cmp(*b.bound) > 0) {
				return failure.Resources{}, fmt.Sprintf("%s: it asks for more than any job holds (%s %s): not priced", who, b.name, q.String())
			}
		}
	}
	res := podResources(spec, gpuLabel)
	if res.CPUMillis < 0 || res.CPUMillis > failure.MaxCPUMillis || res.MemoryBytes < 0 || res.MemoryBytes > failure.MaxMemoryBytes ||
		res.EphemeralStorageBytes < 0 || res.EphemeralStorageBytes > failure.MaxMemoryBytes || res.GPU < 0 || res.GPU > failure.MaxGPUs {
		return failure.Resources{}, fmt.Sprintf("%s: it asks for more than any job holds (%d millicores, %d bytes of memory, %d of local storage, %d GPUs in all): not priced",
			who, res.CPUMillis, res.MemoryBytes, res.EphemeralStorageBytes, res.GPU)
	}
	return res, ""
}

func maxResources(a, b failure.Resources) failure.Resources {
	a.CPUMillis = max(a.CPUMillis, b.CPUMillis)
	a.MemoryBytes = max(a.MemoryBytes, b.MemoryBytes)
	a.EphemeralStorageBytes = max(a.EphemeralStorageBytes, b.EphemeralStorageBytes)
	a.GPU = max(a.GPU, b.GPU)
	return a
}

// unpricedGPUs says when res has GPUs the catalogue has no price for (Catalogue.Cost
// counts them as free).
func unpricedGPUs(cat *failure.Catalogue, res failure.Resources, who string) string {
	if res.GPU == 0 {
		return ""
	}
	if _, ok := cat.GPU(res.GPUType); ok {
		return ""
	}
	if res.GPUType == "" {
		return fmt.Sprintf("%s: its %d GPUs are not priced: its node selector names no GPU model", who, res.GPU)
	}
	return fmt.Sprintf("%s: its %d GPUs are not priced: the catalogue has no GPU model %q", who, res.GPU, res.GPUType)
}

// priced is dollars with the notes joined (at most maxNotes of them), or 0 when
// dollars is past what one run can cost (a mistyped price, or a spec no run has).
func priced(dollars float64, notes []string) (float64, string) {
	if math.IsNaN(dollars) || math.IsInf(dollars, 0) || dollars < 0 || dollars > failure.MaxCost {
		dollars = 0
		notes = append([]string{fmt.Sprintf("its price is past the %g-dollar bound of one run", float64(failure.MaxCost))}, notes...)
	}
	if len(notes) > maxNotes {
		notes = append(notes[:maxNotes], fmt.Sprintf("and %d more", len(notes)-maxNotes))
	}
	return dollars, strings.Join(notes, "; ")
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
