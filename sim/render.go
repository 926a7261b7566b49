package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/autofix/autofix/failure"
)

// epoch is when the simulated cluster's clock starts.
var epoch = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// event renders a failed attempt as the Kubernetes watcher reports it: the Job's
// reason, exit code and message, the tail of its log, its node and usage.
func (s *Scenario) event(ru *run, a int, opt failure.Option, res result) failure.Event {
	t := ru.t
	r := rng(s.Seed, 4, uint64(t.index), uint64(ru.index), uint64(a))
	name := fmt.Sprintf("%s-r%d", t.name, ru.index)
	if a > 0 {
		name = fmt.Sprintf("%s-retry%d", name, a)
	}
	ev := failure.Event{
		ID:     fmt.Sprintf("sim-%s-r%d-a%d", t.name, ru.index, a),
		Time:   epoch.Add(time.Duration(ru.index)*6*time.Hour + time.Duration(t.index)*time.Minute + time.Duration(res.seconds)*time.Second),
		Source: "kubernetes",
		Job: failure.Job{
			Namespace: "ml", Name: name, Kind: t.kind, Template: t.name, Attempt: a + 1,
			Image:     "registry.local/" + kindPrefix[t.kind] + ":1." + fmt.Sprint(t.index%7),
			Resources: opt.Resources, Params: copyParams(opt.Params), Tunables: t.tunables,
			Labels: map[string]string{"team": teams[t.index%len(teams)]},
		},
		Failure: failure.Signals{
			DurationSeconds: float64(int64(res.seconds)),
			Node:            res.node,
			Usage: failure.Usage{PeakMemoryBytes: int64(res.peakMem), PeakGPUMemoryBytes: int64(res.peakGPU),
				PeakEphemeralStorageBytes: int64(res.peakDisk)},
		},
	}
	sig := &ev.Failure
	progress := progressLines(t, r, res.seconds)
	switch res.cause {
	case failure.OOMMemory:
		if r.Float64() < 0.15 && t.config.Resources.GPU > 0 {
			// A DataLoader worker was the process the OOM killer chose.
			sig.Reason, sig.ExitCode = "Error", 1
			sig.LogTail = progress + fmt.Sprintf("RuntimeError: DataLoader worker (pid %d) is killed by signal: Killed.\n", 100+r.IntN(900))
		} else {
			sig.Reason, sig.ExitCode = "OOMKilled", 137
			sig.LogTail = progress
		}
	case failure.OOMGPU:
		sig.Reason, sig.ExitCode = "Error", 1
		sig.LogTail = progress + gpuOOMLines(s, t, r, opt.Resources)
	case failure.NetworkTransient:
		sig.Reason, sig.ExitCode = "Error", 1
		sig.LogTail = progress + pickLine(r, transientLines)
	case failure.Preempted:
		sig.ExitCode = 143
		if r.Float64() < 0.5 {
			sig.Reason, sig.Message = "DisruptionTarget", "PreemptionByScheduler: Kubernetes Scheduler preempted the pod to accommodate a higher-priority pod"
		} else {
			sig.Reason, sig.Message = "Terminated", "Pod was terminated in response to imminent node shutdown."
		}
		sig.LogTail = progress
	case failure.Hardware:
		sig.Reason, sig.ExitCode = "Error", 1
		if t.config.Resources.GPU > 0 {
			sig.LogTail = progress + fmt.Sprintf(pickLine(r, hardwareLines), r.IntN(256))
		} else {
			sig.Reason, sig.ExitCode = "NodeLost", 0
			sig.Message = fmt.Sprintf("Node %s which was running pod %s is unresponsive", res.node, name)
		}
	case failure.DiskFull:
		// The kubelet's eviction: the pod's containers are killed.
		sig.Reason, sig.ExitCode = "Evicted", 137
		sig.Message = fmt.Sprintf("Pod ephemeral local storage usage exceeds the total limit of containers %s. ",
			failure.FormatBytes(opt.Resources.EphemeralStorageBytes))
		sig.LogTail = progress
	case failure.Timeout:
		sig.Reason, sig.Message = "DeadlineExceeded", "Job was active longer than specified deadline"
		sig.LogTail = progress
	case failure.UserCode:
		sig.Reason, sig.ExitCode = "Error", 1
		sig.LogTail = progress + traceback + codeErrors[t.index%len(codeErrors)]
	case failure.DataError:
		sig.Reason, sig.ExitCode = "Error", 1
		sig.LogTail = progress + traceback + dataErrors[t.index%len(dataErrors)]
	case failure.ConfigError:
		if t.index%2 == 0 {
			sig.Reason, sig.Message = "CreateContainerConfigError", `Error: secret "hf-token" not found`
		} else {
			sig.Reason, sig.ExitCode = "Error", 2
			sig.LogTail = "usage: train.py [-h] [--config CONFIG] [--lr LR]\ntrain.py: error: unrecognized arguments: --lr-schedule cosine\n"
		}
	case failure.SchedulingCapacity:
		sig.Reason = "Unschedulable"
		sig.Message = "0/24 nodes are available: 24 Insufficient memory. preemption: 0/24 nodes are available: 24 No preemption victims found for incoming pod."
		if opt.Resources.GPU > s.Cluster.MaxGPUs {
			sig.Message = "0/24 nodes are available: 24 Insufficient nvidia.com/gpu."
		}
	}
	return ev
}

var teams = []string{"vision", "nlp", "ranking", "speech", "platform"}

// progressLines are the lines a job prints before it fails: its own progress.
func progressLines(t *template, r *rand.Rand, seconds float64) string {
	var b strings.Builder
	steps := int(seconds / 2)
	for i := range 6 + r.IntN(10) {
		step := steps * (i + 1) / 16
		switch t.kind {
		case failure.Training, failure.Compression:
			fmt.Fprintf(&b, "[%s] epoch %d step %d loss=%.4f lr=%.2e grad_norm=%.3f throughput=%.1f samples/s\n",
				epoch.Add(time.Duration(step)*2*time.Second).Format("2006-01-02 15:04:05"), step/500, step,
				2.5/float64(1+step/100)+r.Float64()*0.1, 3e-4, 0.5+r.Float64(), 200+r.Float64()*50)
		case failure.Deployment:
			fmt.Fprintf(&b, "INFO:     10.0.%d.%d:0 - \"POST /v2/models/model/infer HTTP/1.1\" 200 OK\n", r.IntN(255), r.IntN(255))
		default:
			fmt.Fprintf(&b, "INFO processed partition %d of %d (%d rows)\n", step, steps+1, 100000+r.IntN(50000))
		}
	}
	return b.String()
}

func gpuOOMLines(s *Scenario, t *template, r *rand.Rand, res failure.Resources) string {
	capGiB := float64(s.Catalogue.GPUMemory(res.GPUType)) / gib
	tried := 0.5 + r.Float64()*4
	switch t.style {
	case 0:
		return traceback + fmt.Sprintf("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate %.2f GiB. GPU %d has a total capacity of %.2f GiB of which %.2f MiB is free. Including non-PyTorch memory, this process has %.2f GiB memory in use.\n",
			tried, r.IntN(max(1, res.GPU)), capGiB*0.99, 20+r.Float64()*300, capGiB*0.97)
	case 1:
		return traceback + fmt.Sprintf("RuntimeError: CUDA out of memory. Tried to allocate %.2f GiB (GPU 0; %.2f GiB total capacity; %.2f GiB already allocated; %.2f MiB free; %.2f GiB reserved in total by PyTorch)\n",
			tried, capGiB*0.99, capGiB*0.9, 10+r.Float64()*200, capGiB*0.95)
	default:
		return fmt.Sprintf("jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate %d bytes.\n", int64(tried*gib))
	}
}

const traceback = "Traceback (most recent call last):\n  File \"/app/train.py\", line 214, in <module>\n    main()\n  File \"/app/train.py\", line 188, in main\n    loss = step(model, batch)\n"

var transientLines = []string{
	"requests.exceptions.ConnectionError: HTTPSConnectionPool(host='storage.googleapis.com', port=443): Max retries exceeded with url: /datasets/shard-00042.tar (Caused by ProtocolError('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer')))\n",
	"botocore.exceptions.ReadTimeoutError: Read timeout on endpoint URL: \"https://s3.us-east-1.amazonaws.com/ml-data/train/part-0007.parquet\"\n",
	"huggingface_hub.utils._errors.HfHubHTTPError: 503 Server Error: Service Unavailable for url: https://huggingface.co/api/models/org/base-model/revision/main\n",
}

var hardwareLines = []string{
	"NVRM: Xid (PCI:0000:%02x:00): 79, pid=2211, GPU has fallen off the bus.\n",
	"RuntimeError: CUDA error: uncorrectable ECC error encountered (device %d)\n",
}

var codeErrors = []string{
	"TypeError: forward() got an unexpected keyword argument 'labels'\n",
	"AttributeError: 'NoneType' object has no attribute 'shape'\n",
	"RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x512 and 768x10)\n",
	"ModuleNotFoundError: No module named 'flash_attn'\n",
}

var dataErrors = []string{
	"FileNotFoundError: [Errno 2] No such file or directory: '/data/shards/train-00017.parquet'\n",
	"OSError: image file is truncated (5 bytes not processed)\n",
	"pyarrow.lib.ArrowInvalid: Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.\n",
}

func pickLine(r *rand.Rand, lines []string) string { return lines[r.IntN(len(lines))] }
