package telemetry

import (
	"fmt"
	"math"

	"github.com/autofix/autofix/failure"
)

// BadValueError is a sample that cannot be a peak: not a finite number, negative, or
// past what the resource can hold. It says what was read; the peak is left out.
type BadValueError struct {
	// Peak names the peak (memory, gpuMemory, ephemeralStorage).
	Peak string
	// Value is the sample, in the metric's unit.
	Value float64
	// Why says what is wrong with it.
	Why string
}

func (e *BadValueError) Error() string {
	return fmt.Sprintf("%s: value %g refused: %s", e.Peak, e.Value, e.Why)
}

// peakBytes checks v, a sample in units of unit bytes, and returns it in bytes
// (rounded to the nearest byte): finite, not negative, and at most bound bytes.
// Zero is a peak of nothing, which failure.Usage reads as unknown.
func peakBytes(peak string, v, unit float64, bound int64) (int64, error) {
	bad := func(format string, a ...any) (int64, error) {
		return 0, &BadValueError{Peak: peak, Value: v, Why: fmt.Sprintf(format, a...)}
	}
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return bad("not a finite number")
	case v < 0:
		return bad("negative")
	}
	b := math.Round(v * unit)
	if b > float64(bound) {
		return bad("%.4g bytes, over the bound of %s", b, failure.FormatBytes(bound))
	}
	return int64(b), nil
}

// bounds are the most each peak of q's run can be, in bytes: 1 PiB of memory or
// local storage (failure.MaxMemoryBytes), and a quarter more than one GPU's memory
// when q says how much that is (marketing's GB and the driver's MiB differ by less).
func bounds(q *Query) (memory, gpu, storage int64) {
	gpu = failure.MaxMemoryBytes
	if q.GPUMemoryBytes > 0 {
		gpu = min(gpu, q.GPUMemoryBytes+q.GPUMemoryBytes/4)
	}
	return failure.MaxMemoryBytes, gpu, failure.MaxMemoryBytes
}
