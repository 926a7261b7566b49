package review

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/autofix/autofix/failure"
)

// edit applies a reviewer's resources (the non-zero fields) to res, within the
// catalogue, and says what it changed for the audit trail.
func (s *Service) edit(res, e failure.Resources) (failure.Resources, []string, error) {
	var edits []string
	if e.MemoryBytes < 0 || e.CPUMillis < 0 || e.GPU < 0 || e.EphemeralStorageBytes < 0 {
		return res, nil, fieldErr("resources", "negative resources")
	}
	if e.MemoryBytes > 0 {
		res.MemoryBytes = e.MemoryBytes
		edits = append(edits, fmt.Sprintf("memory=%.1fGi", float64(e.MemoryBytes)/(1<<30)))
	}
	if e.CPUMillis > 0 {
		res.CPUMillis = e.CPUMillis
		edits = append(edits, fmt.Sprintf("cpu=%dm", e.CPUMillis))
	}
	if e.EphemeralStorageBytes > 0 {
		res.EphemeralStorageBytes = e.EphemeralStorageBytes
		edits = append(edits, fmt.Sprintf("ephemeral-storage=%.1fGi", float64(e.EphemeralStorageBytes)/(1<<30)))
	}
	if e.GPU > 0 {
		res.GPU = e.GPU
		edits = append(edits, fmt.Sprintf("gpu=%d", e.GPU))
	}
	if e.GPUType != "" {
		if _, ok := s.o.Catalogue.GPU(e.GPUType); !ok {
			return res, nil, fieldErr("resources.gpuType", "%q is not a GPU model of the catalogue", e.GPUType)
		}
		res.GPUType = e.GPUType
		edits = append(edits, "gpuType="+e.GPUType)
	}
	return res, edits, nil
}

// fitsLargest holds resources to the largest node now, which may have shrunk since
// the recommendation: an edit's field is named, an unedited option is "option".
func (s *Service) fitsLargest(res failure.Resources, edited bool, picked string) error {
	var l failure.Resources
	if s.o.Largest != nil {
		l = s.o.Largest()
	}
	for _, c := range []struct {
		field, what string
		got, most   int64
	}{{"resources.memory", "memory", res.MemoryBytes, l.MemoryBytes}, {"resources.cpu", "CPU", res.CPUMillis, l.CPUMillis},
		{"resources.gpu", "GPUs", int64(res.GPU), int64(l.GPU)},
		{"resources.ephemeralStorage", "local storage", res.EphemeralStorageBytes, l.EphemeralStorageBytes}} {
		if c.most > 0 && c.got > c.most {
			if !edited {
				return fieldErr("option", "%s asks for more %s than the largest node has now: edit its resources, or reject", picked, c.what)
			}
			return fieldErr(c.field, "more than the largest node has")
		}
	}
	return nil
}

// withinLimits holds edited resources to what the catalogue prices.
func (s *Service) withinLimits(res failure.Resources, ev *failure.Event) error {
	if res.GPU > 0 {
		if _, ok := s.o.Catalogue.GPU(res.GPUType); !ok {
			return fieldErr("resources.gpuType", "%q: GPUs need a GPU model of the catalogue, which prices them", res.GPUType)
		}
	}
	if s.o.Catalogue.HourlyCost(ev.Job.Resources) <= 0 {
		return fieldErr("resources", "the failed run asked for no priced resources, so an edit cannot be held to the policy's cost cap")
	}
	return nil
}

// withinCostCap holds what is approved to the policy's cost cap, whichever way it
// was chosen. A run's cost is its hourly price times its runtime, so an edit scales
// the option's cost multiple (which has its predicted runtime, a longer one for a
// longer deadline) by the change of price; the failed run's own configuration is 1.
func (s *Service) withinCostCap(opt failure.Option, res failure.Resources, ev *failure.Event, edited bool) error {
	field, m := "option", opt.CostMultiple
	if m <= 0 {
		m = 1
	}
	if edited {
		field = "resources"
		if was := s.o.Catalogue.HourlyCost(opt.Resources); was > 0 {
			m *= s.o.Catalogue.HourlyCost(res) / was
		} else {
			m = s.o.Catalogue.HourlyCost(res) / s.o.Catalogue.HourlyCost(ev.Job.Resources)
		}
	}
	if m > s.o.Policy.MaxCostMultiple {
		return fieldErr(field, "%.2fx the failed run's cost, over the policy's cap of %.2fx", m, s.o.Policy.MaxCostMultiple)
	}
	return nil
}

// checkTunable holds a reviewer's value to what the job declares of the parameter.
func checkTunable(t failure.Tunable, v string) error {
	if len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%q: at most 256 printable characters", v)
	}
	if len(t.Values) > 0 {
		if !slices.Contains(t.Values, v) {
			return fmt.Errorf("%q: want one of %v", v, t.Values)
		}
		return nil
	}
	if t.Min != 0 || t.Max != 0 {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < t.Min || (t.Max != 0 && f > t.Max) {
			return fmt.Errorf("%q: want a number from %g to %g", v, t.Min, t.Max)
		}
	}
	return nil
}
