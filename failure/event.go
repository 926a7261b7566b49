package failure

import "time"

// Event is a FailureEvent (schema version 1): one failed attempt of one job.
type Event struct {
	// ID is the idempotency key of the event; required.
	ID     string    `json:"id"`
	Time   time.Time `json:"time,omitzero"`
	Source string    `json:"source,omitempty"`
	Job    Job       `json:"job"`
	// Failure holds what the cluster reported about the failure; required.
	Failure Signals `json:"failure"`
}

// Job identifies the failed job and the configuration it ran with.
type Job struct {
	Namespace string `json:"namespace,omitempty"`
	// Name is required.
	Name string  `json:"name"`
	UID  string  `json:"uid,omitempty"`
	Kind JobKind `json:"kind,omitempty"`
	// Template identifies a recurring job across runs; it defaults to Name.
	Template string `json:"template,omitempty"`
	Pipeline string `json:"pipeline,omitempty"`
	Stage    string `json:"stage,omitempty"`
	// Attempt counts from 1.
	Attempt   int                `json:"attempt,omitempty"`
	Image     string             `json:"image,omitempty"`
	Resources Resources          `json:"resources,omitzero"`
	Params    map[string]string  `json:"params,omitempty"`
	Tunables  map[string]Tunable `json:"tunables,omitempty"`
	Labels    map[string]string  `json:"labels,omitempty"`
}

// Resources is the configuration a job asked for. Zero means not set.
type Resources struct {
	// CPUMillis is CPU in millicores.
	CPUMillis int64
	// MemoryBytes is memory in bytes.
	MemoryBytes int64
	// GPU is the number of GPUs.
	GPU int
	// GPUType names the GPU model, e.g. "nvidia-a100-40gb".
	GPUType string
	// EphemeralStorageBytes is local disk in bytes.
	EphemeralStorageBytes int64
}

// Tunable declares a parameter that remediation may change besides resources.
type Tunable struct {
	Role TunableRole `json:"role"`
	// Min and Max bound a numeric parameter; both zero means unbounded.
	Min float64 `json:"min,omitempty"`
	Max float64 `json:"max,omitempty"`
	// Values lists the allowed values of an enumerated parameter.
	Values []string `json:"values,omitempty"`
}

// Signals is what the cluster reported about a failure.
type Signals struct {
	// Reason is the container termination reason or the Job / Pod condition reason.
	Reason   string `json:"reason,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`
	// Message is the termination or condition message.
	Message string `json:"message,omitempty"`
	// LogTail holds the last lines of the log, newline separated, at most MaxLogTail bytes.
	LogTail string `json:"logTail,omitempty"`
	// LogTruncated is set when LogTail was cut to its last MaxLogTail bytes.
	LogTruncated    bool    `json:"logTruncated,omitempty"`
	DurationSeconds float64 `json:"durationSeconds,omitempty"`
	Node            string  `json:"node,omitempty"`
	Usage           Usage   `json:"usage,omitzero"`
	// Cost is what the failed run cost, in dollars, as its publisher priced it (the
	// Kubernetes watcher: the catalogue's price of what the Job's pods requested,
	// over how long each ran); 0 when it was not priced.
	Cost float64 `json:"cost,omitempty"`
	// Unpriced says why Cost is 0, or what it leaves out (a pod gone before it was
	// priced, GPUs of a type the catalogue does not list); empty when the whole run
	// was priced, or when the publisher does not price runs.
	Unpriced string `json:"unpriced,omitempty"`
}

// Usage is what the job was seen to use before it failed. Zero means unknown.
type Usage struct {
	// PeakMemoryBytes is the peak resident memory, in bytes.
	PeakMemoryBytes int64
	// PeakGPUMemoryBytes is the peak memory on one GPU, in bytes.
	PeakGPUMemoryBytes int64
	// PeakEphemeralStorageBytes is the peak local (ephemeral) storage used, in bytes.
	PeakEphemeralStorageBytes int64
}
