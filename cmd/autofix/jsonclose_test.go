package main

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"testing"
)

func packed(fs ...float32) string {
	b := make([]byte, 4*len(fs))
	for i, f := range fs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return `"` + base64.StdEncoding.EncodeToString(b) + `"`
}

func TestJSONDiff(t *testing.T) {
	tests := []struct {
		name, a, b, where string
	}{
		{"the same", `{"a":[1,2.5],"s":"x","n":null}`, `{"n":null,"s":"x","a":[1,2.5]}`, ""},
		{"numbers within the tolerance", `{"a":1000000,"b":1e-12}`, `{"a":1000000.5,"b":2e-12}`, ""},
		{"a number beyond it", `{"a":[1,2.5]}`, `{"a":[1,2.6]}`, ".a[1]"},
		{"a string", `{"s":"x"}`, `{"s":"y"}`, ".s"},
		{"a missing key", `{"a":1,"b":2}`, `{"a":1,"c":2}`, ".b"},
		{"a longer array", `{"a":[1]}`, `{"a":[1,1]}`, ".a"},
		{"a number for a string", `{"a":"1"}`, `{"a":1}`, ".a"},
		{"a boolean", `{"a":true}`, `{"a":false}`, ".a"},
		{"packed floats within the tolerance", `{"w":` + packed(1, 2) + `}`, `{"w":` + packed(1, 2.000001) + `}`, ""},
		{"packed floats beyond it", `{"w":` + packed(1, 2) + `}`, `{"w":` + packed(1, 2.01) + `}`, ".w[1]"},
		{"packed floats of another length", `{"w":` + packed(1, 2) + `}`, `{"w":` + packed(1) + `}`, ".w"},
		{"packed NaN", `{"w":` + packed(1) + `}`, `{"w":` + packed(float32(math.NaN())) + `}`, ".w[0]"},
	}
	for _, tt := range tests {
		where, _, err := jsonDiff([]byte(tt.a), []byte(tt.b), 1e-6, ".w")
		if err != nil || where != tt.where {
			t.Errorf("%s: jsonDiff = %q, %v; want %q", tt.name, where, err, tt.where)
		}
	}
	if _, _, err := jsonDiff([]byte(`{"a":`), []byte(`{}`), 1e-6); err == nil {
		t.Error("jsonDiff of a broken document = nil error")
	}
}
