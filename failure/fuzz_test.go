package failure

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		fullEvent,
		`{"id":"e1","job":{"name":"j"},"failure":{}}`,
		`{"id":"e1","time":"2026-01-02T03:04:05.123+02:00","job":{"name":"j","resources":{"cpu":0.25,"memory":1e9,"gpu":"2"}},"failure":{"logTail":"x\ny","usage":{"peakMemory":"1.5Gi"}}}`,
		`{"id":"e1","job":{"name":"j","params":{"a":null,"b":1.5,"c":false},"labels":{}},"failure":{"exitCode":-1}}`,
		`[]`, `null`, `{"id":`, `{"id":"\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Decode(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Problem == "" {
				t.Fatalf("Decode error %v (%T) does not name a field and a problem", err, err)
			}
			return
		}
		if ev.ID == "" || ev.Job.Name == "" || ev.Job.Template == "" || ev.Job.Attempt < 1 {
			t.Fatalf("Decode accepted an event without its required fields: %+v", ev)
		}
		if len(ev.Failure.LogTail) > MaxLogTail {
			t.Fatalf("LogTail is %d bytes, over %d", len(ev.Failure.LogTail), MaxLogTail)
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("Marshal(Decode(%q)): %v", data, err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Marshal(ev)) = %v\nencoded: %s", err, out)
		}
		if !back.Time.Equal(ev.Time) {
			t.Fatalf("time changed in a round trip: %v -> %v", ev.Time, back.Time)
		}
		back.Time = ev.Time // the same instant; its location may print differently
		if !reflect.DeepEqual(back, ev) {
			t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", back, ev)
		}
	})
}

// FuzzOutcome decodes recorded outcomes (autofix recommend --history): each is
// rejected, or survives an encode and decode unchanged.
func FuzzOutcome(f *testing.F) {
	for _, seed := range []string{
		`{"template":"etl","attempt":1,"resources":{"cpu":"2","memory":"8Gi","gpu":1,"gpuType":"nvidia-l4"},"succeeded":true,"durationSeconds":600,"usage":{"peakMemory":"5.5Gi","peakGPUMemory":2e10},"node":"n1","cost":0.4}`,
		`{"template":"t","params":{"mb":"8"},"category":"oom_memory"}`,
		`{"resources":{"memory":-1}}`, `{"usage":{"peakMemory":"1e400"}}`, `null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var o Outcome
		if err := json.Unmarshal(data, &o); err != nil {
			return
		}
		out, err := json.Marshal(o)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", o, err)
		}
		var back Outcome
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("an encoded outcome does not decode: %v\n%s", err, out)
		}
		if len(o.Params) == 0 {
			o.Params = nil // an empty map is written as none
		}
		if !reflect.DeepEqual(back, o) {
			t.Fatalf("round trip changed the outcome:\n got %+v\nwant %+v", back, o)
		}
	})
}
