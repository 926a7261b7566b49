package classifier

import (
	"maps"
	"reflect"
	"strings"

	"github.com/autofix/autofix/failure"
)

// Env is what a rule's expr condition can see. Field names in rules are the expr tags.
// Sizes are in bytes, CPU in cores, durations in seconds.
type Env struct {
	// Reason is the container termination reason or the Job / Pod condition reason.
	Reason   string `expr:"reason"`
	ExitCode int    `expr:"exitCode"`
	// Signal is the number of the signal that ended the process (exit codes 129–192
	// mean 128 + signal: 137 is SIGKILL = 9), 0 otherwise.
	Signal  int    `expr:"signal"`
	Message string `expr:"message"`
	Log     string `expr:"log"`
	// Lines are the lines of the log tail.
	Lines        []string `expr:"lines"`
	LogTruncated bool     `expr:"logTruncated"`
	// Exception is the type of the last exception the log reports, as printed
	// ("torch.OutOfMemoryError", "java.lang.OutOfMemoryError"); ExceptionName is its
	// last component ("OutOfMemoryError"). Both are "" when there is none.
	Exception     string `expr:"exception"`
	ExceptionName string `expr:"exceptionName"`
	exceptionLine string // the line that reports Exception, for the evidence

	Kind            string            `expr:"kind"`
	Source          string            `expr:"source"`
	Node            string            `expr:"node"`
	Image           string            `expr:"image"`
	Attempt         int               `expr:"attempt"`
	DurationSeconds float64           `expr:"durationSeconds"`
	Params          map[string]string `expr:"params"`
	Labels          map[string]string `expr:"labels"`
	Resources       ResourcesEnv      `expr:"resources"`
	Usage           UsageEnv          `expr:"usage"`
	// MemoryRatio is peak memory / memory limit, 0 when either is unknown.
	MemoryRatio float64 `expr:"memoryRatio"`
	// GPUMemoryRatio is peak GPU memory / memory of one GPU of the job's type, 0 when
	// either is unknown.
	GPUMemoryRatio float64 `expr:"gpuMemoryRatio"`

	// Units for sizes: resources.memory > 64 * Gi.
	Ki int `expr:"Ki"`
	Mi int `expr:"Mi"`
	Gi int `expr:"Gi"`

	// The lower-cased texts the helpers' case-insensitive regexes run on.
	TextLower    string `expr:"textLower"`
	LogLower     string `expr:"logLower"`
	MessageLower string `expr:"messageLower"`
}

// ResourcesEnv is the job's configuration as rules see it.
type ResourcesEnv struct {
	CPU              float64 `expr:"cpu"`    // cores
	Memory           int     `expr:"memory"` // bytes
	GPU              int     `expr:"gpu"`
	GPUType          string  `expr:"gpuType"`
	EphemeralStorage int     `expr:"ephemeralStorage"` // bytes
}

// UsageEnv is the usage the cluster saw before the failure; 0 means unknown.
type UsageEnv struct {
	PeakMemory    int `expr:"peakMemory"`    // bytes
	PeakGPUMemory int `expr:"peakGPUMemory"` // bytes
}

// reset fills e from ev, computing only what the rule set reads.
func (e *Env) reset(ev *failure.Event, rs *RuleSet) {
	sig, job := &ev.Failure, &ev.Job
	*e = Env{
		Reason:          sig.Reason,
		ExitCode:        sig.ExitCode,
		Message:         sig.Message,
		Log:             sig.LogTail,
		LogTruncated:    sig.LogTruncated,
		Kind:            string(job.Kind),
		Source:          ev.Source,
		Node:            sig.Node,
		Image:           job.Image,
		Attempt:         job.Attempt,
		DurationSeconds: sig.DurationSeconds,
		Params:          job.Params,
		Labels:          job.Labels,
		Resources: ResourcesEnv{
			CPU:              float64(job.Resources.CPUMillis) / 1000,
			Memory:           int(job.Resources.MemoryBytes),
			GPU:              job.Resources.GPU,
			GPUType:          job.Resources.GPUType,
			EphemeralStorage: int(job.Resources.EphemeralStorageBytes),
		},
		Usage: UsageEnv{
			PeakMemory:    int(sig.Usage.PeakMemoryBytes),
			PeakGPUMemory: int(sig.Usage.PeakGPUMemoryBytes),
		},
		Ki: 1 << 10, Mi: 1 << 20, Gi: 1 << 30,
	}
	if c := sig.ExitCode; c > 128 && c <= 128+64 {
		e.Signal = c - 128
	}
	if limit := job.Resources.MemoryBytes; limit > 0 && sig.Usage.PeakMemoryBytes > 0 {
		e.MemoryRatio = float64(sig.Usage.PeakMemoryBytes) / float64(limit)
	}
	if gpuMem := failure.GPUMemoryBytes(job.Resources.GPUType); gpuMem > 0 && sig.Usage.PeakGPUMemoryBytes > 0 {
		e.GPUMemoryRatio = float64(sig.Usage.PeakGPUMemoryBytes) / float64(gpuMem)
	}
	if rs.uses["exception"] || rs.uses["exceptionName"] {
		e.Exception, e.exceptionLine = lastException(sig.LogTail)
		e.ExceptionName = e.Exception[strings.LastIndexByte(e.Exception, '.')+1:]
	}
	if rs.uses["lines"] && sig.LogTail != "" {
		e.Lines = strings.Split(strings.TrimSuffix(sig.LogTail, "\n"), "\n")
	}
	e.MessageLower = toLower(sig.Message)
	e.LogLower = toLower(sig.LogTail)
	if rs.uses["textLower"] {
		e.TextLower = strings.ToLower(sig.Reason) + "\n" + e.MessageLower + "\n" + e.LogLower
	}
}

// envField is a field of Env as rules name it.
type envField struct {
	name  string
	index int
}

// envFields lists the fields of Env by their expr names.
var envFields = func() []envField {
	var out []envField
	t := reflect.TypeFor[Env]()
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			out = append(out, envField{name: f.Tag.Get("expr"), index: i})
		}
	}
	return out
}()

// envTypes declares the variables rules may read to the type checker: every field of
// Env, typed by its zero value, and the boolean variables of the registered literals.
// Rules run against a map of these names (expr reads a map[string]any env without
// reflection), filled from an Env per event.
func envTypes(reg *literalRegistry) map[string]any {
	zero := reflect.ValueOf(Env{})
	m := make(map[string]any, len(envFields)+3*len(reg.literals)+1)
	m[stateVar] = (*state)(nil)
	for _, f := range envFields {
		m[f.name] = zero.Field(f.index).Interface()
	}
	for _, keys := range reg.keys {
		for _, k := range keys {
			if k != "" {
				m[k] = false
			}
		}
	}
	return m
}

// ruleEnv declares to the type checker the variables one rule may read: every field of
// Env and the variables its helpers compile to (vars, from registerLiterals). Declaring
// only its own, rather than the whole set's, keeps each compilation's cost independent
// of the size of the set.
func ruleEnv(fields map[string]any, vars []string) map[string]any {
	m := make(map[string]any, len(fields)+len(vars))
	maps.Copy(m, fields)
	for _, v := range vars {
		m[v] = false
	}
	return m
}

// usedFields returns the Env fields among the variables some rule reads.
func usedFields(uses map[string]bool) []envField {
	var out []envField
	for _, f := range envFields {
		if uses[f.name] {
			out = append(out, f)
		}
	}
	return out
}
