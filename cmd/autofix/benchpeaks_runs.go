package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/autofix/autofix/failure"
)

// maxRunGap ends a run: samples further apart than this (seconds) are not one run.
// The trace samples every 57 s; a gap of over ten minutes is a container that
// stopped being watched, and the window it interrupts is left out.
const maxRunGap = 600

// runCutter cuts each container's series into consecutive runs of size samples.
type runCutter struct {
	size       int
	emit       func(*cutContainer, peakRun) error
	containers map[string]*cutContainer
	dropped    int64
}

// cutContainer is a container's open window and what the policies keep of its
// earlier runs.
type cutContainer struct {
	open       peakRun // the window being filled; samples 0: none
	last       float64 // time of the latest sample
	seen       bool
	runs       int       // runs scored or observed so far
	recent     []float64 // the last spikeWindow runs' peaks, bytes, oldest first
	estimators []peakEstimator
}

func newRunCutter(size int, emit func(*cutContainer, peakRun) error) *runCutter {
	return &runCutter{size: size, emit: emit, containers: map[string]*cutContainer{}}
}

// add takes the next sample of container id: v bytes used at time t (seconds).
// A container's samples must come in time order.
func (c *runCutter) add(id []byte, t, v float64) error {
	ct := c.containers[string(id)]
	if ct == nil {
		if len(c.containers) >= maxPeaksContainer {
			return fmt.Errorf("more than %d containers", maxPeaksContainer)
		}
		ct = &cutContainer{}
		c.containers[string(id)] = ct
	}
	if ct.seen {
		switch {
		case t < ct.last:
			return fmt.Errorf("container_ip %q: sample at %v s comes after one at %v s; want each container's samples in time order", id, t, ct.last)
		case t-ct.last > maxRunGap:
			c.dropped += int64(ct.open.samples)
			ct.open = peakRun{}
		}
	}
	ct.seen, ct.last = true, t
	w := &ct.open
	if w.samples == 0 {
		w.start, w.peak = t, v
	}
	w.samples++
	w.end = t
	w.peak = max(w.peak, v)
	if w.samples < c.size {
		return nil
	}
	run := *w
	*w = peakRun{}
	return c.emit(ct, run)
}

// finish drops the windows left open at the end of the series and returns the
// samples dropped in all.
func (c *runCutter) finish() int64 {
	for _, ct := range c.containers {
		c.dropped += int64(ct.open.samples)
		ct.open = peakRun{}
	}
	return c.dropped
}

// Bounds on untrusted input.
const (
	maxPeaksLine      = 4096
	maxContainerID    = 256
	maxPeaksContainer = 50000
)

// readPeaksCSV streams a trace, a CSV file with a header naming the columns
// timestamp_anon (seconds), value (bytes) and container_ip, and calls each for every
// row. It returns the rows read. Quoted fields are not supported (the trace has none).
func readPeaksCSV(r io.Reader, each func(id []byte, t, v float64) error) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxPeaksLine), maxPeaksLine)
	var cols [3]int
	var rows int64
	line := 0
	fields := make([][]byte, 0, 8)
	for sc.Scan() {
		line++
		text := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if bytes.IndexByte(text, '"') >= 0 {
			return rows, fmt.Errorf("line %d: quoted fields are not supported", line)
		}
		fields = append(fields[:0], bytes.Split(text, []byte(","))...)
		if line == 1 {
			for i, name := range []string{"timestamp_anon", "value", "container_ip"} {
				cols[i] = slices.IndexFunc(fields, func(f []byte) bool { return string(bytes.TrimSpace(f)) == name })
				if cols[i] < 0 {
					return rows, fmt.Errorf("line 1: no column %q in the header", name)
				}
			}
			continue
		}
		if len(text) == 0 {
			continue
		}
		if len(fields) <= max(cols[0], cols[1], cols[2]) {
			return rows, fmt.Errorf("line %d: %d fields, want at least %d", line, len(fields), max(cols[0], cols[1], cols[2])+1)
		}
		t, err := strconv.ParseFloat(string(fields[cols[0]]), 64)
		if err != nil || math.IsInf(t, 0) || math.IsNaN(t) {
			return rows, fmt.Errorf("line %d: timestamp_anon %q: want a number of seconds", line, fields[cols[0]])
		}
		v, err := strconv.ParseFloat(string(fields[cols[1]]), 64)
		// Past a petabyte a sample is a unit error or a corrupt file, not GPU memory:
		// the recommender's history holds peaks as int64 bytes.
		if err != nil || !(v >= 0 && v <= failure.MaxMemoryBytes) {
			return rows, fmt.Errorf("line %d: value %q: want bytes, from 0 to %d (1 PiB)", line, fields[cols[1]], int64(failure.MaxMemoryBytes))
		}
		id := fields[cols[2]]
		if len(id) == 0 || len(id) > maxContainerID {
			return rows, fmt.Errorf("line %d: container_ip: want 1 to %d characters, got %d", line, maxContainerID, len(id))
		}
		rows++
		if err := each(id, t, v); err != nil {
			return rows, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return rows, fmt.Errorf("line %d: longer than %d bytes", line+1, maxPeaksLine)
	} else if err != nil {
		return rows, err
	}
	if line == 0 {
		return 0, errors.New("empty file: want a header naming timestamp_anon, value and container_ip")
	}
	return rows, nil
}
