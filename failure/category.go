package failure

import "fmt"

// Category is the class of a failure in autofix's taxonomy.
type Category string

// The failure taxonomy. DESIGN.md describes the signals of each.
const (
	OOMMemory             Category = "oom_memory"
	OOMGPU                Category = "oom_gpu"
	DiskFull              Category = "disk_full"
	Timeout               Category = "timeout"
	Preempted             Category = "preempted"
	Hardware              Category = "hardware"
	NetworkTransient      Category = "network_transient"
	ImagePull             Category = "image_pull"
	SchedulingCapacity    Category = "scheduling_capacity"
	DependencyUnavailable Category = "dependency_unavailable"
	DataError             Category = "data_error"
	UserCode              Category = "user_code"
	ConfigError           Category = "config_error"
	Unknown               Category = "unknown"
)

// Action is the kind of remediation a classification calls for.
type Action string

// Remediation actions.
const (
	IncreaseMemory    Action = "increase_memory"
	IncreaseGPUMemory Action = "increase_gpu_memory"
	IncreaseDisk      Action = "increase_disk"
	// IncreaseShm grows the job's shared-memory volume (/dev/shm), which is sized
	// separately from its disk and its memory limit.
	IncreaseShm     Action = "increase_shm"
	ExtendTimeout   Action = "extend_timeout"
	RetryBackoff    Action = "retry_backoff"
	Reschedule      Action = "reschedule"
	WaitForCapacity Action = "wait_for_capacity"
	NoRetry         Action = "no_retry"
)

// taxonomy gives each category its default action and retry decision.
var taxonomy = map[Category]struct {
	action    Action
	retryable bool
}{
	OOMMemory:             {IncreaseMemory, true},
	OOMGPU:                {IncreaseGPUMemory, true},
	DiskFull:              {IncreaseDisk, true},
	Timeout:               {ExtendTimeout, true},
	Preempted:             {RetryBackoff, true},
	Hardware:              {Reschedule, true},
	NetworkTransient:      {RetryBackoff, true},
	ImagePull:             {RetryBackoff, true},
	SchedulingCapacity:    {WaitForCapacity, true},
	DependencyUnavailable: {RetryBackoff, true},
	DataError:             {NoRetry, false},
	UserCode:              {NoRetry, false},
	ConfigError:           {NoRetry, false},
	Unknown:               {NoRetry, false},
}

// Categories lists every category of the taxonomy, in the order of DESIGN.md.
func Categories() []Category {
	return []Category{
		OOMMemory, OOMGPU, DiskFull, Timeout, Preempted, Hardware, NetworkTransient,
		ImagePull, SchedulingCapacity, DependencyUnavailable, DataError, UserCode,
		ConfigError, Unknown,
	}
}

// Valid reports whether c is a category of the taxonomy.
func (c Category) Valid() bool {
	_, ok := taxonomy[c]
	return ok
}

// DefaultAction is the action the taxonomy prescribes for c (NoRetry for an invalid c).
func (c Category) DefaultAction() Action {
	if t, ok := taxonomy[c]; ok {
		return t.action
	}
	return NoRetry
}

// DefaultRetryable reports whether the taxonomy considers failures of c retryable.
func (c Category) DefaultRetryable() bool {
	return taxonomy[c].retryable
}

// UnmarshalText accepts only categories of the taxonomy.
func (c *Category) UnmarshalText(b []byte) error {
	v := Category(b)
	if !v.Valid() {
		return fmt.Errorf("unknown category %q", b)
	}
	*c = v
	return nil
}

// Actions lists every remediation action.
func Actions() []Action {
	return []Action{
		IncreaseMemory, IncreaseGPUMemory, IncreaseDisk, IncreaseShm, ExtendTimeout,
		RetryBackoff, Reschedule, WaitForCapacity, NoRetry,
	}
}

// Valid reports whether a is a known remediation action.
func (a Action) Valid() bool {
	for _, v := range Actions() {
		if a == v {
			return true
		}
	}
	return false
}

// UnmarshalText accepts only known actions.
func (a *Action) UnmarshalText(b []byte) error {
	v := Action(b)
	if !v.Valid() {
		return fmt.Errorf("unknown action %q", b)
	}
	*a = v
	return nil
}

// JobKind is what a job does in an ML platform.
type JobKind string

// Job kinds.
const (
	Training    JobKind = "training"
	Compression JobKind = "compression"
	Deployment  JobKind = "deployment"
	Batch       JobKind = "batch"
)

// Valid reports whether k is a known job kind.
func (k JobKind) Valid() bool {
	switch k {
	case Training, Compression, Deployment, Batch:
		return true
	}
	return false
}

// TunableRole tells the optimizer what a tunable parameter means.
type TunableRole string

// Tunable roles.
const (
	RoleMicroBatch    TunableRole = "micro_batch"
	RoleGradAccum     TunableRole = "grad_accum"
	RolePrecision     TunableRole = "precision"
	RoleCheckpointing TunableRole = "checkpointing"
	RoleWorkers       TunableRole = "workers"
	RoleOther         TunableRole = "other"
)

// Valid reports whether r is a known tunable role.
func (r TunableRole) Valid() bool {
	switch r {
	case RoleMicroBatch, RoleGradAccum, RolePrecision, RoleCheckpointing, RoleWorkers, RoleOther:
		return true
	}
	return false
}
