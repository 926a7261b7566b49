package simcluster

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/autofix/autofix/failure"
)

// Ground truth, carried by annotations on a pod template: what the job really needs
// and what happens to it. autofix never reads them; the simulated kubelet applies
// them to the resources each pod actually asks for, as the simulator's rules do.
const (
	// TruthMemory is the job's true memory need (a quantity): a pod whose memory
	// limit is below it is OOMKilled.
	TruthMemory = "sim.autofix.io/memory-need"
	// TruthGPUBase and TruthGPUPerSample are the GPU memory of the model and optimiser
	// state, and of each sample of the micro-batch (env MICRO_BATCH_SIZE): a pod whose
	// GPU model (node selector) has less runs out of CUDA memory.
	TruthGPUBase      = "sim.autofix.io/gpu-memory-base"
	TruthGPUPerSample = "sim.autofix.io/gpu-memory-per-sample"
	// TruthUserCode "true": the code raises on start, whatever it is given.
	TruthUserCode = "sim.autofix.io/user-code"
	// TruthPreemptedAt is the attempt (label autofix.io/attempt) that is preempted.
	TruthPreemptedAt = "sim.autofix.io/preempted-attempt"
	// TruthEvicted "true": the node evicts the first attempt (local storage pressure).
	TruthEvicted = "sim.autofix.io/evicted"
	// TruthImageMissing "true": the image cannot be pulled.
	TruthImageMissing = "sim.autofix.io/image-missing"
	// TruthCrash "true": the server exits on start.
	TruthCrash = "sim.autofix.io/crash"
	// TruthRunSeconds is how long the main container runs before it ends.
	TruthRunSeconds = "sim.autofix.io/run-seconds"
	// TruthStorage is the local storage the job writes (a quantity): its peak.
	TruthStorage = "sim.autofix.io/storage-need"
)

// GroundTruth is the Truth of the annotations above, with the GPU memory of the
// catalogue's models (by the value of the node selector gpuLabel).
func GroundTruth(gpus []failure.GPUModel, gpuLabel string) Truth {
	mem := map[string]float64{}
	for _, g := range gpus {
		mem[g.Name] = g.MemoryGiB
	}
	return func(p *corev1.Pod) Outcome {
		o := outcome(p, mem, gpuLabel)
		if s, err := strconv.ParseFloat(p.Annotations[TruthRunSeconds], 64); err == nil && s > 0 {
			o.RunFor = time.Duration(s * float64(time.Second))
		}
		return o
	}
}

func outcome(p *corev1.Pod, gpuMem map[string]float64, gpuLabel string) Outcome {
	o := decide(p, gpuMem, gpuLabel)
	if o.Waiting == "" {
		o.Peaks = peaks(p, gpuMem, gpuLabel)
	}
	return o
}

// peaks is what a pod that runs uses at its highest, by its truth: its memory need,
// up to its limit (where the OOM killer stops it); its GPU memory need, up to what
// the GPU has when it runs out (the allocation that failed did not happen); the
// local storage it writes. A need the truth does not name has no series.
func peaks(p *corev1.Pod, gpuMem map[string]float64, gpuLabel string) Peaks {
	var pk Peaks
	c := p.Spec.Containers[0]
	if need, err := resource.ParseQuantity(p.Annotations[TruthMemory]); err == nil && need.Sign() > 0 {
		pk.MemoryBytes = need.Value()
		if limit, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && limit.Value() < pk.MemoryBytes {
			pk.MemoryBytes = limit.Value()
		}
	}
	if need, ok := gpuNeed(p); ok && need > 0 {
		pk.GPUMemoryBytes = need
		if have, ok := gpuMem[p.Spec.NodeSelector[gpuLabel]]; ok && cudaOOM(need, have) {
			pk.GPUMemoryBytes = int64((have - gpuFreeAtOOM) * (1 << 30))
		}
	}
	if need, err := resource.ParseQuantity(p.Annotations[TruthStorage]); err == nil && need.Sign() > 0 {
		pk.StorageBytes = need.Value()
	}
	return pk
}

// gpuFreeAtOOM is the GPU memory left, in GiB, when a job runs out of it (what the
// CUDA error says is free).
const gpuFreeAtOOM = 1.10

// gpuNeed is the GPU memory a pod needs on each GPU, in bytes: the model's and
// optimiser's, and each sample's of its micro-batch (env MICRO_BATCH_SIZE).
func gpuNeed(p *corev1.Pod) (int64, bool) {
	base, err := resource.ParseQuantity(p.Annotations[TruthGPUBase])
	if err != nil {
		return 0, false
	}
	per, _ := resource.ParseQuantity(p.Annotations[TruthGPUPerSample])
	mb := 0
	for _, e := range p.Spec.Containers[0].Env {
		if e.Name == "MICRO_BATCH_SIZE" {
			mb, _ = strconv.Atoi(e.Value)
		}
	}
	return base.Value() + per.Value()*int64(mb), true
}

// cudaOOM reports whether a need (bytes) does not fit a GPU of have GiB.
func cudaOOM(need int64, have float64) bool { return float64(need)/(1<<30) > have*0.96 }

// decide is how the pod ends, by its truth.
func decide(p *corev1.Pod, gpuMem map[string]float64, gpuLabel string) Outcome {
	a := p.Annotations
	c := p.Spec.Containers[0]
	if a[TruthPreemptedAt] != "" && a[TruthPreemptedAt] == p.Labels[failure.LabelAttempt] {
		return Outcome{Preempted: true}
	}
	if a[TruthEvicted] == "true" && p.Labels[failure.LabelAttempt] == "" {
		return Outcome{Evicted: true}
	}
	if a[TruthImageMissing] == "true" {
		return Outcome{Waiting: "ImagePullBackOff"}
	}
	if a[TruthCrash] == "true" {
		return Outcome{Reason: "Error", ExitCode: 1, Message: "Traceback (most recent call last):\n" +
			"  File \"/app/serve.py\", line 12, in <module>\n" +
			"FileNotFoundError: [Errno 2] No such file or directory: '/models/model.onnx'"}
	}
	if a[TruthUserCode] == "true" {
		return Outcome{Reason: "Error", ExitCode: 1, Message: "Traceback (most recent call last):\n" +
			"  File \"/app/train.py\", line 88, in <module>\n    main()\n" +
			"TypeError: unsupported operand type(s) for +: 'int' and 'str'"}
	}
	if need, err := resource.ParseQuantity(a[TruthMemory]); err == nil {
		if limit := c.Resources.Limits[corev1.ResourceMemory]; limit.Cmp(need) < 0 {
			return Outcome{Reason: "OOMKilled", ExitCode: 137,
				Message: "Epoch 3: 41% | 2113/5005 [12:31<17:08, 2.81it/s]\nKilled"}
		}
	}
	if need, ok := gpuNeed(p); ok {
		if have, ok := gpuMem[p.Spec.NodeSelector[gpuLabel]]; ok && cudaOOM(need, have) {
			return Outcome{Reason: "Error", ExitCode: 1, Message: fmt.Sprintf(
				"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of %.2f GiB of which %.2f GiB is free.",
				have, gpuFreeAtOOM)}
		}
	}
	return Outcome{Succeed: true}
}
