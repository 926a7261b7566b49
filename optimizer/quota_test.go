package optimizer

import (
	"testing"

	"github.com/autofix/autofix/failure"
)

func TestQueueQuota(t *testing.T) {
	gib := int64(1 << 30)
	cpuMem := Covered{Memory: true, CPU: true}
	q := QueueQuota{Groups: []QuotaGroup{
		// Two flavors: one with memory to spare, one with CPU to spare.
		{Covers: cpuMem, Room: []failure.Resources{{MemoryBytes: 64 * gib, CPUMillis: 4000}, {MemoryBytes: 8 * gib, CPUMillis: 32000}}},
		{Covers: Covered{GPU: true}, Room: []failure.Resources{{GPU: 2}}},
	}}
	tests := []struct {
		name string
		r    failure.Resources
		want bool
	}{
		{"fits the first flavor", failure.Resources{MemoryBytes: 32 * gib, CPUMillis: 2000}, true},
		{"fits the second flavor", failure.Resources{MemoryBytes: 4 * gib, CPUMillis: 16000}, true},
		{"needs the memory of one and the CPU of the other", failure.Resources{MemoryBytes: 32 * gib, CPUMillis: 16000}, false},
		{"GPUs within the second group", failure.Resources{MemoryBytes: gib, CPUMillis: 1000, GPU: 2}, true},
		{"more GPUs than the second group has", failure.Resources{MemoryBytes: gib, CPUMillis: 1000, GPU: 3}, false},
		{"an uncovered resource is not limited", failure.Resources{MemoryBytes: gib, CPUMillis: 1000, EphemeralStorageBytes: 1 << 50}, true},
	}
	for _, tt := range tests {
		if got := q.Feasible(&failure.Option{Resources: tt.r}); got != tt.want {
			t.Errorf("%s: Feasible(%+v) = %v, want %v", tt.name, tt.r, got, tt.want)
		}
	}
	if !(QueueQuota{}).Feasible(&failure.Option{Resources: failure.Resources{MemoryBytes: 1 << 50}}) {
		t.Error("a queue with no groups limits nothing")
	}
	noRoom := QueueQuota{Groups: []QuotaGroup{{Covers: cpuMem, Room: []failure.Resources{{}}}}}
	if noRoom.Feasible(&failure.Option{Resources: failure.Resources{MemoryBytes: 1, CPUMillis: 1}}) {
		t.Error("a flavor with nothing left holds nothing")
	}
}
