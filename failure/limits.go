package failure

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode"
)

// Bounds on the numbers and strings of an event. An event is untrusted input: a value
// past one of these is not a big job, it is a fault (a buggy exporter, a unit error)
// or an attack, and arithmetic on it would overflow or reach infinity downstream.
const (
	// MaxDurationSeconds bounds durationSeconds (and a run's duration in an
	// outcome): a year and a day.
	MaxDurationSeconds = 366 * 24 * 3600
	// MaxMemoryBytes bounds memory and local storage (resources and usage): 1 PiB.
	MaxMemoryBytes = 1 << 50
	// MaxCPUMillis bounds CPU: 100,000 cores.
	MaxCPUMillis = 100_000_000
	// MaxCost bounds the cost of one run, in dollars.
	MaxCost = 1e9
	// MaxTunableBound bounds a tunable's min and max.
	MaxTunableBound = 1e12
	// MaxIntParam bounds the value of an integer tunable (micro-batch, accumulation
	// steps, workers).
	MaxIntParam = 1 << 30
	// MaxAttempt bounds job.attempt.
	MaxAttempt = 10000
	// MaxNameLength bounds names: job.name, job.namespace, template, pipeline, stage,
	// node, gpuType, image (a Kubernetes object name is at most 253 bytes; an image
	// reference may be longer, hence the margin).
	MaxNameLength = 512
	// MaxEntries bounds the number of params, tunables, labels and tunable values.
	MaxEntries = 256
	// MaxValueLength bounds a param or label value, a reason and an unpriced note, in
	// bytes.
	MaxValueLength = 4096
	// MaxMessageLength bounds failure.message, in bytes; a longer one keeps its end.
	MaxMessageLength = 32 << 10
)

// checkName refuses a name that is too long or holds control or invalid characters.
func checkName(field, s string) error {
	if len(s) > MaxNameLength {
		return fieldErr(field, "%d bytes is over the %d-byte limit", len(s), MaxNameLength)
	}
	return checkText(field, s)
}

// checkText refuses control characters other than tab and newline, which
// multi-line values may hold. (encoding/json has already replaced invalid UTF-8.)
func checkText(field, s string) error {
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return fieldErr(field, "contains a control character (U+%04X)", r)
		}
	}
	return nil
}

// checkValue refuses a value over MaxValueLength or with control characters.
func checkValue(field, s string) error {
	if len(s) > MaxValueLength {
		return fieldErr(field, "%d bytes is over the %d-byte limit", len(s), MaxValueLength)
	}
	return checkText(field, s)
}

// checkFinite refuses NaN, infinities and values outside [lo, hi].
func checkFinite(field string, v, lo, hi float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fieldErr(field, "must be a finite number")
	}
	if v < lo || v > hi {
		return fieldErr(field, "%v is outside [%v, %v]", v, lo, hi)
	}
	return nil
}

// checkBytes refuses a byte count over MaxMemoryBytes.
func checkBytes(field string, raw json.RawMessage, v int64) error {
	if v > MaxMemoryBytes {
		return fieldErr(field, "%s is over the %s limit", raw, bytesString(MaxMemoryBytes))
	}
	return nil
}

// checkParam refuses a param value that is too long, and, for a parameter declared
// as an integer tunable, one that is not an integer in [0, MaxIntParam].
func checkParam(name, v string, t Tunable, declared bool) error {
	field := "job.params." + name
	if err := checkValue(field, v); err != nil {
		return err
	}
	if !declared {
		return nil
	}
	switch t.Role {
	case RoleMicroBatch, RoleGradAccum, RoleWorkers:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > MaxIntParam {
			return fieldErr(field, "%q: a %s tunable wants a whole number from 0 to %d", v, t.Role, MaxIntParam)
		}
	case RoleOther:
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			if err := checkFinite(field, f, -MaxTunableBound, MaxTunableBound); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check reports the first value of o that no real run has: a negative or non-finite
// duration or cost, or one past the limits above (an unpriced note included).
func (o *Outcome) Check() error {
	if err := checkFinite("durationSeconds", o.DurationSeconds, 0, MaxDurationSeconds); err != nil {
		return err
	}
	if err := checkFinite("cost", o.Cost, 0, MaxCost); err != nil {
		return err
	}
	if err := checkValue("unpriced", o.Unpriced); err != nil {
		return err
	}
	if o.Attempt < 0 || o.Attempt > MaxAttempt {
		return fieldErr("attempt", "%d is outside [0, %d]", o.Attempt, MaxAttempt)
	}
	return nil
}

// Check reports the first non-finite or out-of-range number of o: a recommendation
// holding one cannot be encoded (JSON has no NaN or infinity) or acted on.
func (o *Option) Check() error {
	for _, f := range []struct {
		name   string
		v, max float64
	}{
		{"pSuccess", o.PSuccess, 1}, {"pFix", o.PFix, 1},
		{"runtimeSeconds", o.RuntimeSeconds, 10 * MaxDurationSeconds},
		{"runCost", o.RunCost, MaxCost}, {"expectedCost", o.ExpectedCost, MaxCost},
		{"costMultiple", o.CostMultiple, MaxCost},
		{"deadlineSeconds", o.DeadlineSeconds, 10 * MaxDurationSeconds},
		{"delaySeconds", o.DelaySeconds, MaxDurationSeconds},
	} {
		if err := checkFinite(f.name, f.v, 0, f.max); err != nil {
			return err
		}
	}
	if o.Resources.MemoryBytes < 0 || o.Resources.MemoryBytes > MaxMemoryBytes ||
		o.Resources.EphemeralStorageBytes < 0 || o.Resources.EphemeralStorageBytes > MaxMemoryBytes ||
		o.Resources.CPUMillis < 0 || o.Resources.CPUMillis > MaxCPUMillis || o.Resources.GPU < 0 || o.Resources.GPU > MaxGPUs {
		return fmt.Errorf("resources: %+v is outside the limits of a job", o.Resources)
	}
	return nil
}
