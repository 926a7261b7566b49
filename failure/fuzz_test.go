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
