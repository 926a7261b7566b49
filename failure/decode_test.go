package failure

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const fullEvent = `{
  "id": "evt-7f3a",
  "time": "2026-11-25T10:00:00Z",
  "source": "kubernetes",
  "schemaExtra": {"ignored": true},
  "job": {
    "namespace": "ml", "name": "resnet50-train", "uid": "u-1",
    "kind": "training", "pipeline": "resnet50", "stage": "train", "attempt": 2,
    "image": "registry.local/train:1.4",
    "resources": {"cpu": "500m", "memory": "16Gi", "gpu": 1,
                  "gpuType": "nvidia-a100-40gb", "ephemeralStorage": "20G"},
    "params": {"micro_batch_size": "64", "grad_accum_steps": 1, "amp": true},
    "tunables": {"micro_batch_size": {"role": "micro_batch", "min": 1, "max": 512},
                 "precision": {"role": "precision", "values": ["fp32", "bf16"]}},
    "labels": {"team": "vision"}
  },
  "failure": {
    "reason": "OOMKilled", "exitCode": 137, "message": "m",
    "logTail": "a\nb", "durationSeconds": 1834.5, "node": "gpu-node-3",
    "usage": {"peakMemory": "15.9Gi", "peakGPUMemory": 42000000000},
    "cost": 2.75, "unpriced": "pod x has not ended"
  }
}`

func TestDecodeFullEvent(t *testing.T) {
	got, err := Decode([]byte(fullEvent))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := Event{
		ID:     "evt-7f3a",
		Time:   time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		Source: "kubernetes",
		Job: Job{
			Namespace: "ml", Name: "resnet50-train", UID: "u-1", Kind: Training,
			Template: "resnet50-train", Pipeline: "resnet50", Stage: "train", Attempt: 2,
			Image: "registry.local/train:1.4",
			Resources: Resources{
				CPUMillis: 500, MemoryBytes: 16 << 30, GPU: 1, GPUType: "nvidia-a100-40gb",
				EphemeralStorageBytes: 20_000_000_000,
			},
			Params: map[string]string{"micro_batch_size": "64", "grad_accum_steps": "1", "amp": "true"},
			Tunables: map[string]Tunable{
				"micro_batch_size": {Role: RoleMicroBatch, Min: 1, Max: 512},
				"precision":        {Role: RolePrecision, Values: []string{"fp32", "bf16"}},
			},
			Labels: map[string]string{"team": "vision"},
		},
		Failure: Signals{
			Reason: "OOMKilled", ExitCode: 137, Message: "m", LogTail: "a\nb",
			DurationSeconds: 1834.5, Node: "gpu-node-3",
			Usage: Usage{PeakMemoryBytes: 17072495002, PeakGPUMemoryBytes: 42_000_000_000},
			Cost:  2.75, Unpriced: "pod x has not ended",
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode(fullEvent) =\n%+v\nwant\n%+v", got, want)
	}
}

func TestDecodeDefaults(t *testing.T) {
	got, err := Decode([]byte(`{"id":"e1","job":{"name":"j"},"failure":{}}`))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Job.Template != "j" {
		t.Errorf("Template = %q, want the job name %q", got.Job.Template, "j")
	}
	if got.Job.Attempt != 1 {
		t.Errorf("Attempt = %d, want 1", got.Job.Attempt)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		field   string
		problem string // a part of the problem text
	}{
		{"empty", ``, "payload", "empty"},
		{"not json", `hello`, "payload", "not valid JSON"},
		{"truncated", `{"id":"e1"`, "payload", "not valid JSON"},
		{"array", `[1,2]`, "payload", "want a JSON object"},
		{"null", `null`, "payload", "want a JSON object"},
		{"missing id", `{"job":{"name":"j"},"failure":{}}`, "id", "required"},
		{"blank id", `{"id":"  ","job":{"name":"j"},"failure":{}}`, "id", "required"},
		{"id control char", `{"id":"a\u0007b","job":{"name":"j"},"failure":{}}`, "id", "control"},
		{"id too long", `{"id":"` + strings.Repeat("x", MaxIDLength+1) + `","job":{"name":"j"},"failure":{}}`, "id", "limit"},
		{"id a dot", `{"id":".","job":{"name":"j"},"failure":{}}`, "id", "dot segment"},
		{"id two dots", `{"id":"..","job":{"name":"j"},"failure":{}}`, "id", "dot segment"},
		{"id not string", `{"id":7,"job":{"name":"j"},"failure":{}}`, "id", "want a string, got number"},
		{"missing job", `{"id":"e1","failure":{}}`, "job.name", "required"},
		{"missing job name", `{"id":"e1","job":{},"failure":{}}`, "job.name", "required"},
		{"missing failure", `{"id":"e1","job":{"name":"j"}}`, "failure", "required"},
		{"null failure", `{"id":"e1","job":{"name":"j"},"failure":null}`, "failure", "required"},
		{"bad time", `{"id":"e1","time":"yesterday","job":{"name":"j"},"failure":{}}`, "time", "RFC 3339"},
		{"bad kind", `{"id":"e1","job":{"name":"j","kind":"inference"},"failure":{}}`, "job.kind", `"inference"`},
		{"negative attempt", `{"id":"e1","job":{"name":"j","attempt":-1},"failure":{}}`, "job.attempt", "negative"},
		{"attempt string", `{"id":"e1","job":{"name":"j","attempt":"2"},"failure":{}}`, "job.attempt", "want a number"},
		{"bad memory", `{"id":"e1","job":{"name":"j","resources":{"memory":"16GB"}},"failure":{}}`, "job.resources.memory", "invalid quantity"},
		{"negative memory", `{"id":"e1","job":{"name":"j","resources":{"memory":"-1Gi"}},"failure":{}}`, "job.resources.memory", "negative"},
		{"memory object", `{"id":"e1","job":{"name":"j","resources":{"memory":{}}},"failure":{}}`, "job.resources.memory", "want a quantity"},
		{"huge memory", `{"id":"e1","job":{"name":"j","resources":{"memory":"9Ei"}},"failure":{}}`, "job.resources.memory", "too large"},
		{"bad cpu", `{"id":"e1","job":{"name":"j","resources":{"cpu":"four"}},"failure":{}}`, "job.resources.cpu", "invalid quantity"},
		{"fractional gpu", `{"id":"e1","job":{"name":"j","resources":{"gpu":0.5}},"failure":{}}`, "job.resources.gpu", "whole number"},
		{"bad storage", `{"id":"e1","job":{"name":"j","resources":{"ephemeralStorage":"lots"}},"failure":{}}`, "job.resources.ephemeralStorage", "invalid quantity"},
		{"param object", `{"id":"e1","job":{"name":"j","params":{"lr":{"v":1}}},"failure":{}}`, "job.params.lr", "string, number or boolean"},
		{"bad tunable role", `{"id":"e1","job":{"name":"j","tunables":{"bs":{"role":"batch"}}},"failure":{}}`, "job.tunables.bs.role", `"batch"`},
		{"tunable min over max", `{"id":"e1","job":{"name":"j","tunables":{"bs":{"role":"micro_batch","min":8,"max":4}}},"failure":{}}`, "job.tunables.bs", "above max"},
		{"exit code string", `{"id":"e1","job":{"name":"j"},"failure":{"exitCode":"137"}}`, "failure.exitCode", "want a number"},
		{"exit code overflow", `{"id":"e1","job":{"name":"j"},"failure":{"exitCode":99999999999}}`, "failure.exitCode", "want a number"},
		{"negative duration", `{"id":"e1","job":{"name":"j"},"failure":{"durationSeconds":-3}}`, "failure.durationSeconds", "negative"},
		{"bad peak", `{"id":"e1","job":{"name":"j"},"failure":{"usage":{"peakMemory":"x"}}}`, "failure.usage.peakMemory", "invalid quantity"},
		{"negative cost", `{"id":"e1","job":{"name":"j"},"failure":{"cost":-1}}`, "failure.cost", "outside"},
		{"absurd cost", `{"id":"e1","job":{"name":"j"},"failure":{"cost":1e300}}`, "failure.cost", "outside"},
		{"cost string", `{"id":"e1","job":{"name":"j"},"failure":{"cost":"2"}}`, "failure.cost", "want a number"},
		{"long unpriced note", `{"id":"e1","job":{"name":"j"},"failure":{"unpriced":"` + strings.Repeat("u", MaxValueLength+1) + `"}}`, "failure.unpriced", "limit"},
		{"unpriced note with NUL", `{"id":"e1","job":{"name":"j"},"failure":{"unpriced":"a\u0000b"}}`, "failure.unpriced", "control"},
		{"bad disk peak", `{"id":"e1","job":{"name":"j"},"failure":{"usage":{"peakEphemeralStorage":"-1Gi"}}}`, "failure.usage.peakEphemeralStorage", ""},
		// Absurd numbers: each would overflow, or reach +Inf, in the arithmetic downstream.
		{"absurd duration", `{"id":"e1","job":{"name":"j"},"failure":{"reason":"DeadlineExceeded","durationSeconds":1e308}}`, "failure.durationSeconds", "outside"},
		{"duration past a year", `{"id":"e1","job":{"name":"j"},"failure":{"durationSeconds":1e19}}`, "failure.durationSeconds", "outside"},
		{"duration overflow", `{"id":"e1","job":{"name":"j"},"failure":{"durationSeconds":1e400}}`, "failure.durationSeconds", "want a number"},
		{"absurd memory", `{"id":"e1","job":{"name":"j","resources":{"memory":"2Pi"}},"failure":{}}`, "job.resources.memory", "over the 1Pi limit"},
		{"absurd storage", `{"id":"e1","job":{"name":"j","resources":{"ephemeralStorage":"4E"}},"failure":{}}`, "job.resources.ephemeralStorage", "limit"},
		{"absurd cpu", `{"id":"e1","job":{"name":"j","resources":{"cpu":"1e9"}},"failure":{}}`, "job.resources.cpu", "limit"},
		{"absurd peak", `{"id":"e1","job":{"name":"j"},"failure":{"usage":{"peakGPUMemory":1e18}}}`, "failure.usage.peakGPUMemory", "limit"},
		{"absurd tunable max", `{"id":"e1","job":{"name":"j","tunables":{"bs":{"role":"micro_batch","min":1,"max":1e300}}},"failure":{}}`, "job.tunables.bs.max", "outside"},
		{"absurd micro-batch", `{"id":"e1","job":{"name":"j","params":{"bs":"9223372036854775807"},"tunables":{"bs":{"role":"micro_batch"}}},"failure":{}}`, "job.params.bs", "whole number"},
		{"fractional accumulation", `{"id":"e1","job":{"name":"j","params":{"acc":2.5},"tunables":{"acc":{"role":"grad_accum"}}},"failure":{}}`, "job.params.acc", "whole number"},
		{"absurd other tunable", `{"id":"e1","job":{"name":"j","params":{"lr":1e308},"tunables":{"lr":{"role":"other"}}},"failure":{}}`, "job.params.lr", "outside"},
		{"absurd attempt", `{"id":"e1","job":{"name":"j","attempt":99999},"failure":{}}`, "job.attempt", "limit"},
		{"name with NUL", `{"id":"e1","job":{"name":"a\u0000b"},"failure":{}}`, "job.name", "control"},
		{"namespace too long", `{"id":"e1","job":{"name":"j","namespace":"` + strings.Repeat("n", MaxNameLength+1) + `"},"failure":{}}`, "job.namespace", "limit"},
		{"too many labels", `{"id":"e1","job":{"name":"j","labels":{` + manyKeys(MaxEntries+1) + `}},"failure":{}}`, "job.labels", "limit"},
		{"long label value", `{"id":"e1","job":{"name":"j","labels":{"a":"` + strings.Repeat("v", MaxValueLength+1) + `"}},"failure":{}}`, "job.labels.a", "limit"},
		{"too many params", `{"id":"e1","job":{"name":"j","params":{` + manyKeys(MaxEntries+1) + `}},"failure":{}}`, "job.params", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode(%.60q) error = %v, want a *FieldError", tt.in, err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("Decode(%.60q) = field %q, problem %q; want field %q, problem containing %q",
					tt.in, fe.Field, fe.Problem, tt.field, tt.problem)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("error %q does not start with the field name %q", err, tt.field)
			}
		})
	}
}

func TestDecodePayloadTooLarge(t *testing.T) {
	big := `{"id":"e1","job":{"name":"j"},"failure":{"logTail":"` + strings.Repeat("x", MaxPayload) + `"}}`
	_, err := Decode([]byte(big))
	if !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("Decode(%d bytes) error = %v, want ErrPayloadTooLarge", len(big), err)
	}
	if !strings.HasPrefix(err.Error(), "payload: ") {
		t.Errorf("error %q does not name the payload", err)
	}
}

func TestDecodeTruncatesLongLogTail(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < MaxLogTail+5000; i++ {
		b.WriteString("line é ")
		b.WriteString(strings.Repeat("y", i%50))
		b.WriteByte('\n')
	}
	b.WriteString("CUDA out of memory at the very end")
	log := b.String()
	in, _ := json.Marshal(map[string]any{"id": "e1", "job": map[string]any{"name": "j"}, "failure": map[string]any{"logTail": log}})

	ev, err := Decode(in)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	got := ev.Failure.LogTail
	if !ev.Failure.LogTruncated {
		t.Error("LogTruncated = false, want true")
	}
	if len(got) > MaxLogTail {
		t.Errorf("len(LogTail) = %d, want at most %d", len(got), MaxLogTail)
	}
	if len(got) < MaxLogTail-1024 {
		t.Errorf("len(LogTail) = %d, kept too little of %d", len(got), MaxLogTail)
	}
	if !strings.HasSuffix(got, "CUDA out of memory at the very end") {
		t.Errorf("LogTail lost its end: ...%q", got[len(got)-40:])
	}
	if !strings.HasPrefix(got, "line é ") {
		t.Errorf("LogTail does not start on a line boundary: %q...", got[:20])
	}
	if !strings.HasSuffix(log, got) {
		t.Error("LogTail is not a suffix of the original log")
	}
}

func TestDecodeKeepsShortLogTailAndFlag(t *testing.T) {
	ev, err := Decode([]byte(`{"id":"e1","job":{"name":"j"},"failure":{"logTail":"x","logTruncated":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Failure.LogTail != "x" || !ev.Failure.LogTruncated {
		t.Errorf("got LogTail %q, LogTruncated %v; want \"x\", true (truncated upstream)", ev.Failure.LogTail, ev.Failure.LogTruncated)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	ev, err := Decode([]byte(fullEvent))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"cpu":"500m"`, `"memory":"16Gi"`, `"ephemeralStorage":"20G"`, `"time":"2026-11-25T10:00:00Z"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal = %s\nwant it to contain %s", out, want)
		}
	}
	back, err := Decode(out)
	if err != nil {
		t.Fatalf("Decode(Marshal(ev)): %v", err)
	}
	if !reflect.DeepEqual(back, ev) {
		t.Errorf("round trip changed the event:\n got %+v\nwant %+v", back, ev)
	}
}

func TestEventUnmarshalJSONValidates(t *testing.T) {
	var doc struct {
		Event Event `json:"event"`
	}
	err := json.Unmarshal([]byte(`{"event":{"id":"e1","job":{"name":"j"}}}`), &doc)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "failure" {
		t.Errorf("json.Unmarshal of an embedded event without failure = %v, want a failure FieldError", err)
	}
}

// manyKeys returns n JSON members "k0":"v", "k1":"v", ...
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	return b.String()
}
