package failure

import (
	"encoding/json"
	"math"
	"strconv"
)

// MarshalJSON writes resources as Kubernetes quantity strings, omitting unset ones.
func (r Resources) MarshalJSON() ([]byte, error) {
	w := struct {
		CPU              string `json:"cpu,omitempty"`
		Memory           string `json:"memory,omitempty"`
		GPU              int    `json:"gpu,omitempty"`
		GPUType          string `json:"gpuType,omitempty"`
		EphemeralStorage string `json:"ephemeralStorage,omitempty"`
	}{GPU: r.GPU, GPUType: r.GPUType}
	if r.CPUMillis > 0 {
		w.CPU = cpuString(r.CPUMillis)
	}
	if r.MemoryBytes > 0 {
		w.Memory = bytesString(r.MemoryBytes)
	}
	if r.EphemeralStorageBytes > 0 {
		w.EphemeralStorage = bytesString(r.EphemeralStorageBytes)
	}
	return json.Marshal(w)
}

// MarshalJSON writes usage peaks as Kubernetes quantity strings, omitting unknown ones.
func (u Usage) MarshalJSON() ([]byte, error) {
	w := struct {
		PeakMemory    string `json:"peakMemory,omitempty"`
		PeakGPUMemory string `json:"peakGPUMemory,omitempty"`
		PeakEphemeral string `json:"peakEphemeralStorage,omitempty"`
	}{}
	if u.PeakMemoryBytes > 0 {
		w.PeakMemory = bytesString(u.PeakMemoryBytes)
	}
	if u.PeakGPUMemoryBytes > 0 {
		w.PeakGPUMemory = bytesString(u.PeakGPUMemoryBytes)
	}
	if u.PeakEphemeralStorageBytes > 0 {
		w.PeakEphemeral = bytesString(u.PeakEphemeralStorageBytes)
	}
	return json.Marshal(w)
}

// cpuString returns the quantity form of a CPU amount in millicores, e.g. "4" or "500m".
func cpuString(millis int64) string {
	if millis%1000 == 0 {
		return strconv.FormatInt(millis/1000, 10)
	}
	return strconv.FormatInt(millis, 10) + "m"
}

// bytesString returns the shortest exact quantity form of a byte count, preferring
// binary suffixes: 16Gi, 20G, 1536Mi, 17072495002.
func bytesString(b int64) string {
	best := strconv.FormatInt(b, 10)
	for _, s := range byteSuffixes {
		if b >= s.size && b%s.size == 0 {
			if v := strconv.FormatInt(b/s.size, 10) + s.suffix; len(v) < len(best) {
				best = v
			}
		}
	}
	return best
}

var byteSuffixes = []struct {
	suffix string
	size   int64
}{
	{"Ei", 1 << 60}, {"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10},
	{"E", 1e18}, {"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3},
}

// FormatBytes formats a byte count for people, in binary units with at most one
// decimal: 16Gi, 15.9Gi, 512Mi, 100.
func FormatBytes(b int64) string {
	for _, s := range byteSuffixes[:6] {
		if b >= s.size {
			v := float64(b) / float64(s.size)
			return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) + s.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}
