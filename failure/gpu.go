package failure

import (
	"strconv"
	"strings"
)

// GPUMemoryBytes returns the memory of one GPU of the given type in bytes, or 0 when
// the type is unknown. Types that carry their size in the name, as GKE and the NVIDIA
// device plugin's labels do ("nvidia-a100-80gb", "NVIDIA-H100-80GB-HBM3"), are read
// from it; a few common types without a size are known by name.
func GPUMemoryBytes(gpuType string) int64 {
	t := strings.ToLower(gpuType)
	for part := range strings.FieldsFuncSeq(t, func(r rune) bool { return r == '-' || r == '_' || r == '.' }) {
		if num, ok := strings.CutSuffix(part, "gb"); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 && n <= 1024 {
				return int64(n) << 30
			}
		}
	}
	for _, g := range knownGPUMemory {
		if strings.Contains(t, g.name) {
			return g.gib << 30
		}
	}
	return 0
}

// knownGPUMemory is the memory in GiB of GPU models usually named without their size,
// longer names first so that "l40" is tried before "l4".
var knownGPUMemory = []struct {
	name string
	gib  int64
}{
	{"rtx-4090", 24}, {"mi300x", 192}, {"a10g", 24}, {"a100", 40}, {"h100", 80},
	{"h200", 141}, {"v100", 16}, {"p100", 16}, {"l40", 48}, {"k80", 12}, {"t4", 16}, {"l4", 24},
}
