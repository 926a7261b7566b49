package failure

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{
		16 << 30: "16Gi", 17072495002: "15.9Gi", 512 << 20: "512Mi", 100: "100", 1536: "1.5Ki",
	} {
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestOutcomeRoundTrip(t *testing.T) {
	in := Outcome{
		Template: "t", Attempt: 2, Succeeded: false, Category: OOMMemory, DurationSeconds: 61.5, Cost: 0.25,
		Resources: Resources{CPUMillis: 4000, MemoryBytes: 24 << 30, GPU: 2, GPUType: "nvidia-l4"},
		Usage:     Usage{PeakMemoryBytes: 24 << 30, PeakGPUMemoryBytes: 20 << 30},
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Outcome
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("Unmarshal(%s): %v", data, err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
	var r Resources
	if err := json.Unmarshal([]byte(`{"memory":"lots"}`), &r); err == nil || !strings.HasPrefix(err.Error(), "memory: invalid quantity") {
		t.Errorf("Unmarshal of a bad quantity = %v, want an error naming memory", err)
	}
}

// TestOutcomeJSONLeavesOutWhatWasNotMeasured: an outcome without usage has no usage
// field (not zero peaks, not an empty object); its cost and unpriced note are kept.
func TestOutcomeJSONLeavesOutWhatWasNotMeasured(t *testing.T) {
	tests := []struct {
		name    string
		in      Outcome
		has     []string
		hasNone []string
	}{
		{"nothing measured", Outcome{Template: "t", Attempt: 1, Cost: 0.5}, []string{`"cost":0.5`}, []string{`"usage"`, `"unpriced"`}},
		{"a peak measured", Outcome{Template: "t", Attempt: 1, Usage: Usage{PeakMemoryBytes: 8 << 30}},
			[]string{`"usage":{"peakMemory":"8Gi"}`, `"cost":0`}, nil},
		{"not priced", Outcome{Template: "t", Attempt: 1, Unpriced: "the Job started no pod"},
			[]string{`"cost":0`, `"unpriced":"the Job started no pod"`}, []string{`"usage"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.has {
				if !strings.Contains(string(b), s) {
					t.Errorf("%s: want %s in it", b, s)
				}
			}
			for _, s := range tt.hasNone {
				if strings.Contains(string(b), s) {
					t.Errorf("%s: want no %s in it", b, s)
				}
			}
			var back Outcome
			if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, tt.in) {
				t.Errorf("round trip of %s = %+v, %v; want %+v", b, back, err, tt.in)
			}
		})
	}
	if err := (&Outcome{Unpriced: strings.Repeat("u", MaxValueLength+1)}).Check(); err == nil || !strings.HasPrefix(err.Error(), "unpriced: ") {
		t.Errorf("Check of an outcome with a note past the limit = %v, want an error naming unpriced", err)
	}
}

func TestCatalogue(t *testing.T) {
	c := DefaultCatalogue()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := Resources{CPUMillis: 8000, MemoryBytes: 64 << 30, GPU: 2, GPUType: "nvidia-a100-80gb"}
	want := 8*0.0316 + 64*0.0042 + 2*3.93
	if got := c.HourlyCost(r); math.Abs(got-want) > 1e-9 {
		t.Errorf("HourlyCost = %v, want %v", got, want)
	}
	if got := c.Cost(r, 1800); math.Abs(got-want/2) > 1e-9 {
		t.Errorf("Cost(30 min) = %v, want %v", got, want/2)
	}
	if got := c.GPUMemory("NVIDIA-A100-80GB"); got != 80<<30 {
		t.Errorf("GPUMemory = %d", got)
	}
	bad := Catalogue{GPUs: []GPUModel{{Name: "a", MemoryGiB: 1}, {Name: "a", MemoryGiB: 1}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `gpus[1].name: "a" listed twice`) {
		t.Errorf("Validate = %v", err)
	}
}
