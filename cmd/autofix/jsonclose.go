package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// jsonDiff compares two JSON documents that should be the same up to the last
// digits of their numbers: the same structure, keys, strings and booleans, and
// numbers within tol of each other, relative to the larger (absolute below 1). It
// returns where they differ first (a path like .bias[3]), empty when they are
// close, and the largest relative difference of their numbers. The strings at the
// paths of packed are base64 of little-endian float32s, compared as numbers.
func jsonDiff(a, b []byte, tol float64, packed ...string) (where string, largest float64, err error) {
	va, err := decodeNumbers(a)
	if err != nil {
		return "", 0, err
	}
	vb, err := decodeNumbers(b)
	if err != nil {
		return "", 0, err
	}
	d := &differ{tol: tol, packed: packed}
	d.walk("", va, vb)
	return d.where, d.largest, nil
}

func decodeNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

type differ struct {
	tol     float64
	packed  []string
	where   string
	largest float64
}

// number compares two numbers at path.
func (d *differ) number(path string, x, y float64) {
	rel := math.Abs(x-y) / math.Max(1, math.Max(math.Abs(x), math.Abs(y)))
	if math.IsNaN(rel) {
		rel = math.Inf(1)
	}
	d.largest = math.Max(d.largest, rel)
	if rel > d.tol {
		d.mark(path)
	}
}

// floats32 compares two strings of packed float32s at path.
func (d *differ) floats32(path string, a, b any) {
	x, okx := a.(string)
	y, oky := b.(string)
	bx, errx := base64.StdEncoding.DecodeString(x)
	by, erry := base64.StdEncoding.DecodeString(y)
	if !okx || !oky || errx != nil || erry != nil || len(bx) != len(by) || len(bx)%4 != 0 {
		d.mark(path)
		return
	}
	for i := 0; i < len(bx); i += 4 {
		d.number(path+"["+strconv.Itoa(i/4)+"]", float64(math.Float32frombits(binary.LittleEndian.Uint32(bx[i:]))),
			float64(math.Float32frombits(binary.LittleEndian.Uint32(by[i:]))))
	}
}

func (d *differ) mark(path string) {
	if path == "" {
		path = "the document"
	}
	if d.where == "" {
		d.where = path
	}
}

func (d *differ) walk(path string, a, b any) {
	if slices.Contains(d.packed, path) {
		d.floats32(path, a, b)
		return
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			d.mark(path)
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v, ok := y[k]
			if !ok {
				d.mark(path + "." + k)
				continue
			}
			d.walk(path+"."+k, x[k], v)
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			d.mark(path)
			return
		}
		for i := range x {
			d.walk(path+"["+strconv.Itoa(i)+"]", x[i], y[i])
		}
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			d.mark(path)
			return
		}
		fx, errx := x.Float64()
		fy, erry := y.Float64()
		if errx != nil || erry != nil {
			if x != y {
				d.mark(path)
			}
			return
		}
		d.number(path, fx, fy)
	default: // strings, booleans, null
		if fmt.Sprint(a) != fmt.Sprint(b) || fmt.Sprintf("%T", a) != fmt.Sprintf("%T", b) {
			d.mark(path)
		}
	}
}
