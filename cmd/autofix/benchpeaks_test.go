package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
)

const gib = float64(1 << 30)

// traceCSV writes a trace in the file's format: a header, then one row per sample
// of each container, every 60 s, interleaved as the real file is (by time).
func traceCSV(series map[string][]float64) string {
	var b strings.Builder
	b.WriteString("timestamp_anon,value,container_ip\n")
	longest := 0
	for _, s := range series {
		longest = max(longest, len(s))
	}
	for i := range longest {
		for _, id := range []string{"a", "b", "c"} {
			if s := series[id]; i < len(s) {
				fmt.Fprintf(&b, "%d.0,%.1f,%s\n", 1000+60*i, s[i], id)
			}
		}
	}
	return b.String()
}

func TestRunCutterCutsConsecutiveWindows(t *testing.T) {
	type sample struct {
		id   string
		t, v float64
	}
	tests := []struct {
		name    string
		size    int
		samples []sample
		want    []string // container:start-end/samples peak
		dropped int64
	}{
		{"two containers, interleaved, a partial window dropped", 2,
			[]sample{{"a", 0, 1}, {"b", 0, 5}, {"a", 60, 3}, {"b", 60, 4}, {"a", 120, 2}, {"b", 120, 9}, {"b", 180, 1}},
			[]string{"a:0-60/2 3", "b:0-60/2 5", "b:120-180/2 9"}, 1},
		{"a gap of over ten minutes ends the open window", 3,
			[]sample{{"a", 0, 1}, {"a", 60, 7}, {"a", 60 + maxRunGap + 1, 2}, {"a", 720, 2}, {"a", 780, 4}},
			[]string{"a:661-780/3 4"}, 2},
		{"a gap of ten minutes does not", 2,
			[]sample{{"a", 0, 1}, {"a", maxRunGap, 7}},
			[]string{"a:0-600/2 7"}, 0},
		{"windows of one sample", 1,
			[]sample{{"a", 0, 1}, {"a", 60, 0}},
			[]string{"a:0-0/1 1", "a:60-60/1 0"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			var c *runCutter
			c = newRunCutter(tt.size, func(ct *cutContainer, r peakRun) error {
				for id, x := range c.containers {
					if x == ct {
						got = append(got, fmt.Sprintf("%s:%v-%v/%d %v", id, r.start, r.end, r.samples, r.peak))
					}
				}
				return nil
			})
			for _, s := range tt.samples {
				if err := c.add([]byte(s.id), s.t, s.v); err != nil {
					t.Fatal(err)
				}
			}
			if d := c.finish(); d != tt.dropped {
				t.Errorf("dropped %d samples, want %d", d, tt.dropped)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("runs %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRunCutterRejectsSamplesOutOfOrder(t *testing.T) {
	c := newRunCutter(3, func(*cutContainer, peakRun) error { return nil })
	if err := c.add([]byte("a"), 100, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.add([]byte("b"), 50, 1); err != nil {
		t.Fatalf("another container's earlier sample: %v", err)
	}
	err := c.add([]byte("a"), 99, 1)
	if err == nil || !strings.Contains(err.Error(), "time order") {
		t.Errorf("a sample back in time: error %v, want one about time order", err)
	}
}

func TestReadPeaksCSVNamesTheLineAndField(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"missing column", "timestamp_anon,value\n1,2\n", `line 1: no column "container_ip"`},
		{"bad value", "timestamp_anon,value,container_ip\n1,2,a\n1,x,a\n", `line 3: value "x"`},
		{"negative value", "timestamp_anon,value,container_ip\n1,-2,a\n", `line 2: value "-2"`},
		{"NaN value", "timestamp_anon,value,container_ip\n1,NaN,a\n", `line 2: value "NaN"`},
		{"infinite time", "timestamp_anon,value,container_ip\nInf,1,a\n", `line 2: timestamp_anon "Inf"`},
		{"short row", "timestamp_anon,value,container_ip\n1,2\n", "line 2: 2 fields, want at least 3"},
		{"no container", "timestamp_anon,value,container_ip\n1,2,\n", "line 2: container_ip"},
		{"quoted", "timestamp_anon,value,container_ip\n1,2,\"a\"\n", "line 2: quoted fields"},
		{"too long", "timestamp_anon,value,container_ip\n1,2," + strings.Repeat("a", maxPeaksLine) + "\n", "line 2: longer than"},
		{"empty", "", "empty file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readPeaksCSV(strings.NewReader(tt.in), func([]byte, float64, float64) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestReadPeaksCSVFindsColumnsByName(t *testing.T) {
	in := "container_ip,extra,value,timestamp_anon\r\nx1,9,2048.0,1662858720.0\r\n\r\nx2,9,0,1662858777\r\n"
	var got []string
	n, err := readPeaksCSV(strings.NewReader(in), func(id []byte, t, v float64) error {
		got = append(got, fmt.Sprintf("%s %v %v", id, t, v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[x1 1.66285872e+09 2048 x2 1.662858777e+09 0]"; n != 2 || fmt.Sprint(got) != want {
		t.Errorf("read %d rows %v, want 2 rows %s", n, got, want)
	}
}

// limits runs a policy over earlier peaks (in GiB, one run an hour) and returns its
// limit for the next run, in GiB, and the chance it gives it.
func limits(p peakPolicy, peaks ...float64) (float64, float64) {
	e := p.new()
	for i, pk := range peaks {
		e.observe(peakRun{start: 3600 * float64(i), end: 3600*float64(i) + 3540, samples: 60, peak: pk * gib})
	}
	l, pHold := e.limit(3600 * float64(len(peaks)))
	return l / gib, pHold
}

func policyNamed(t *testing.T, ps []peakPolicy, name string) peakPolicy {
	t.Helper()
	for _, p := range ps {
		if p.name == name {
			return p
		}
	}
	t.Fatalf("no policy %q", name)
	return peakPolicy{}
}

func TestScaledPeakPolicies(t *testing.T) {
	ps := baselinePolicies()
	last, most := policyNamed(t, ps, "last x1.2"), policyNamed(t, ps, "max x1.2")
	tests := []struct {
		name    string
		p       peakPolicy
		history []float64
		next    float64
		covered bool
	}{
		{"last x1.2 misses a peak 30% above the last", last, []float64{10, 10, 10}, 13, false},
		{"last x1.2 covers a peak 20% above the last", last, []float64{10, 10, 10}, 12, true},
		{"last x1.2 forgets an earlier spike", last, []float64{10, 20, 10}, 20, false},
		{"max x1.2 remembers it", most, []float64{10, 20, 10}, 20, true},
		{"max x1.2 misses a peak 30% above the largest", most, []float64{10, 20, 10}, 26, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, pHold := limits(tt.p, tt.history...)
			if got := tt.next <= l; got != tt.covered {
				t.Errorf("after %v the limit is %.2f GiB: covers %v GiB = %v, want %v", tt.history, l, tt.next, got, tt.covered)
			}
			if pHold != -1 {
				t.Errorf("pHold %v, want -1: the policy gives no chance", pHold)
			}
		})
	}
}

func TestVPABucketsHoldTheirValues(t *testing.T) {
	for _, v := range []float64{1, 9.99e6, 1e7, 1.5e7, 2.4e10, 4.7e10, 1e15} {
		b := vpaBucket(v)
		if lo, hi := vpaBucketStart(b), vpaBucketStart(b+1); !(lo <= v && v < hi) || hi > 1.051*v+vpaFirstBucket {
			t.Errorf("vpaBucket(%g) = %d: [%g, %g) does not hold it closely", v, b, lo, hi)
		}
	}
}

func TestVPAPercentilePolicy(t *testing.T) {
	vpa := policyNamed(t, baselinePolicies(), "vpa p95")
	steady := make([]float64, 30)
	for i := range steady {
		steady[i] = 20
	}
	// Five spikes to 40 GiB, then 60 hours at 20: the spikes are 8% of the runs, but
	// after 2.5 half-lives they weigh under 5%.
	old := append([]float64{40, 40, 40, 40, 40}, make([]float64, 60)...)
	for i := 5; i < len(old); i++ {
		old[i] = 20
	}
	recent := append(append([]float64{}, old[5:]...), 40, 40, 40, 40, 40)
	tests := []struct {
		name    string
		history []float64
		lo, hi  float64 // GiB
	}{
		{"steady peaks get a 15% margin over their bucket", steady, 20 * 1.15, (20*1.05 + 0.01) * 1.15},
		{"spikes a day and more old are forgotten", old, 20 * 1.15, (20*1.05 + 0.01) * 1.15},
		{"recent spikes are not", recent, 40 * 1.15, (40*1.05 + 0.01) * 1.15},
		{"a tiny peak gets the 250 MiB minimum", []float64{0.01}, 250.0 / 1024, 250.0 / 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if l, _ := limits(vpa, tt.history...); !(l >= tt.lo && l <= tt.hi) {
				t.Errorf("limit %.3f GiB, want %.3f to %.3f", l, tt.lo, tt.hi)
			}
		})
	}
}

func defaultAutofix(t testing.TB) peakPolicy {
	t.Helper()
	m, err := models.Default()
	if err != nil {
		t.Fatal(err)
	}
	return autofixPeakPolicy(m, failure.Resources{}, 0.95)
}

func TestAutofixPolicyLearnsTheSpread(t *testing.T) {
	af := defaultAutofix(t)
	last := policyNamed(t, baselinePolicies(), "last x1.2")
	steady := []float64{20, 20, 20, 20, 20, 20}
	l, pHold := limits(af, steady...)
	if !(l >= 20 && l < 24) {
		t.Errorf("steady 20 GiB peaks: autofix's limit %.2f GiB, want from 20 to under last x1.2's 24", l)
	}
	if !(pHold >= 0.95 && pHold <= 1) {
		t.Errorf("steady peaks: autofix gives its limit a chance of %v, want its 0.95 target or more", pHold)
	}
	// Peaks alternate between 20 and 26 GiB: the next 26 passes last x1.2 after a 20,
	// but not autofix, whose margin grows with the spread of the peaks.
	noisy := []float64{20, 26, 20, 26, 20, 26, 20}
	if l, _ := limits(last, noisy...); l >= 26 {
		t.Fatalf("last x1.2 gives %.2f GiB: the case does not test what it should", l)
	}
	if l, _ := limits(af, noisy...); l < 26 {
		t.Errorf("peaks alternating 20 and 26 GiB: autofix's limit %.2f GiB misses the next 26", l)
	}
}

func TestAutofixPolicyHistoryIsBounded(t *testing.T) {
	// The recommender reads all of a long history as it reads the recent runs kept.
	af := defaultAutofix(t)
	e := af.new().(*autofixPeaks)
	var all []peakRun
	for i := range 200 {
		r := peakRun{start: 3600 * float64(i), end: 3600*float64(i) + 3540, samples: 60,
			peak: gib * (20 + 6*math.Sin(float64(i)/3) + float64(i%7))}
		all = append(all, r)
		e.observe(r)
	}
	if len(e.runs) > 2*autofixKeep {
		t.Fatalf("%d runs kept, want at most %d", len(e.runs), 2*autofixKeep)
	}
	got, _ := e.limit(0)
	full := &autofixPeaks{rec: e.rec}
	for _, r := range all {
		full.runs = append(full.runs, failure.Outcome{Template: peaksTemplate, Attempt: 1, Succeeded: true,
			DurationSeconds: r.seconds(), Usage: failure.Usage{PeakMemoryBytes: int64(math.Round(r.peak))}})
	}
	lowest := math.Inf(1)
	for _, o := range full.runs[len(full.runs)-autofixKeep:] {
		lowest = math.Min(lowest, float64(o.Usage.PeakMemoryBytes))
	}
	ev := failure.Event{ID: peaksTemplate, Job: failure.Job{Name: peaksTemplate, Template: peaksTemplate, Attempt: 1,
		Resources: failure.Resources{MemoryBytes: int64(lowest / 2)}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: all[0].seconds() / 2}}
	rec := full.rec.Recommend(&ev, full.runs)
	if want := float64(rec.Options[rec.Chosen].Resources.MemoryBytes); got != want {
		t.Errorf("limit from the kept runs %.3f GiB, from all %d runs %.3f GiB", got/gib, len(all), want/gib)
	}
}

func TestBenchPeaksScoresEachPolicy(t *testing.T) {
	// Windows of two samples, scored after one earlier run: container a peaks at
	// 10, 10, 14 (a spike: over 1.3 times the median of the runs before it), 10 GiB;
	// b at 20, 20, 10, 14 (not a spike: the median before it is 20); c uses none.
	in := traceCSV(map[string][]float64{
		"a": {5 * gib, 10 * gib, 10 * gib, 1 * gib, 14 * gib, 13 * gib, 10 * gib, 2 * gib, 3 * gib},
		"b": {20 * gib, 0, 20 * gib, 20 * gib, 10 * gib, 10 * gib, 14 * gib, 14 * gib},
		"c": {0, 0, 0, 0},
	})
	last := policyNamed(t, baselinePolicies(), "last x1.2")
	rep, err := benchPeaks(strings.NewReader(in), 2, 1, []peakPolicy{last})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Samples != 21 || rep.Containers != 3 || rep.Runs != 8 || rep.IdleRuns != 2 || rep.Scored != 6 ||
		rep.DroppedSamples != 1 || rep.Spikes != 1 {
		t.Errorf("samples %d containers %d runs %d idle %d scored %d dropped %d spikes %d, want 21 3 8 2 6 1 1",
			rep.Samples, rep.Containers, rep.Runs, rep.IdleRuns, rep.Scored, rep.DroppedSamples, rep.Spikes)
	}
	if len(rep.Policies) != 2 || rep.Policies[1].Policy != "oracle" {
		t.Fatalf("policies %+v, want last x1.2 and the oracle", rep.Policies)
	}
	// Limits: a 12 (peak 10: covered), 12 (14: killed), 16.8 (10: covered);
	// b 24 (20: covered), 24 (10: covered), 12 (14: killed).
	got := rep.Policies[0]
	approx := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if got.Runs != 6 || got.OOMs != 2 || !approx(got.Coverage, 4.0/6) || got.SpikeCoverage != 0 {
		t.Errorf("runs %d OOMs %d coverage %v of spikes %v, want 6, 2, 0.667, 0", got.Runs, got.OOMs, got.Coverage, got.SpikeCoverage)
	}
	if want := (0.2 + 0.68 + 0.2 + 1.4) / 4; !approx(got.MeanOver, want) || !approx(got.MedianOver, 0.44) {
		t.Errorf("over-provisioning mean %v median %v, want %v and 0.44", got.MeanOver, got.MedianOver, want)
	}
	limits, peaks := 12+12+16.8+24+24+12, 10+14+10+20+10+14.0
	if want := limits / peaks; !approx(got.GBHours, want) {
		t.Errorf("GB-h vs oracle %v, want %v", got.GBHours, want)
	}
	if want := (limits + 14 + 14) / peaks; !approx(got.WithReruns, want) {
		t.Errorf("GB-h with reruns vs oracle %v, want %v", got.WithReruns, want)
	}
	if got.Predicted != nil {
		t.Errorf("predicted coverage %v for a policy that predicts none", *got.Predicted)
	}
	if o := rep.Policies[1]; o.Coverage != 1 || o.SpikeCoverage != 1 || o.OOMs != 0 || o.MeanOver != 0 || o.GBHours != 1 || o.WithReruns != 1 {
		t.Errorf("oracle %+v, want full coverage at its own peaks", o)
	}
}

func TestBenchPeaksCommand(t *testing.T) {
	dir := t.TempDir()
	var a, b []float64
	for i := range 240 {
		a = append(a, gib*(20+float64(i%50)/10))
		b = append(b, gib*(8+float64(i%7)))
	}
	if err := os.WriteFile(filepath.Join(dir, peaksFile), []byte(traceCSV(map[string][]float64{"a": a, "b": b})), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "", "bench-peaks", "--data", dir, "--window", "20", "--json", "--factors", "1.4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep peaksReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not a report: %v\n%s", err, out)
	}
	var names []string
	for _, p := range rep.Policies {
		names = append(names, p.Policy)
		if p.Runs != rep.Scored || p.Runs != 2*(12-3) {
			t.Errorf("%s scored %d runs, report %d, want %d", p.Policy, p.Runs, rep.Scored, 2*(12-3))
		}
	}
	if want := "[autofix last x1.2 max x1.2 vpa p95 last x1.4 max x1.4 oracle]"; fmt.Sprint(names) != want {
		t.Errorf("policies %v, want %s", names, want)
	}
	if rep.Policies[0].Predicted == nil {
		t.Errorf("autofix reports no predicted coverage")
	}

	code, out, errOut = runCmd(t, "", "bench-peaks", "--data", filepath.Join(dir, peaksFile), "--window", "20")
	if code != 0 || !strings.Contains(out, "| autofix | 18 |") || !strings.Contains(out, "| oracle | 18 | 1.000 |") {
		t.Errorf("table: exit %d, %s\n%s", code, errOut, out)
	}
}

func TestBenchPeaksCommandErrorsNameTheFlag(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--data", missing}, "--data " + missing + ": no such directory"},
		{[]string{"--data", t.TempDir()}, "--data "},
		{[]string{"--window", "0"}, "--window 0"},
		{[]string{"--window", "1"}, "--window 1: want at least 2 samples"},
		{[]string{"--min-history", "0"}, "--min-history 0"},
		{[]string{"--factors", "0.5"}, "--factors 0.5"},
		{[]string{"--target", "1"}, "--target 1"},
		{[]string{"--data", missing, "--job-gpu", "nvidia-z9"}, `--job-gpu "nvidia-z9"`},
		{[]string{"--data", missing, "--models", missing}, "--models " + missing},
	}
	for _, tt := range tests {
		code, _, errOut := runCmd(t, "", append([]string{"bench-peaks"}, tt.args...)...)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("bench-peaks %v: exit %d, %q; want 1 and an error containing %q", tt.args, code, errOut, tt.want)
		}
	}
}

// BenchmarkBenchPeaksTrace runs bench-peaks' core, as the command does by default,
// over the real trace when it is there: ../shared/data/alibaba-genai-2026 from the
// main checkout, or the directory AUTOFIX_PEAKS_DATA names. It reports autofix's
// coverage and GB-hours against the oracle's next to the speed.
func BenchmarkBenchPeaksTrace(b *testing.B) {
	dir := os.Getenv("AUTOFIX_PEAKS_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "data", "alibaba-genai-2026")
	}
	data, err := os.ReadFile(filepath.Join(dir, peaksFile))
	if err != nil {
		b.Skipf("no trace (%v); set AUTOFIX_PEAKS_DATA to the directory holding %s. "+
			"bench-peaks is a benchmark on real data, not a test the build needs", err, peaksFile)
	}
	policies := append([]peakPolicy{defaultAutofix(b)}, baselinePolicies()...)
	b.SetBytes(int64(len(data)))
	var rep peaksReport
	for b.Loop() {
		if rep, err = benchPeaks(bytes.NewReader(data), 60, 3, policies); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rep.Scored), "runs")
	b.ReportMetric(rep.Policies[0].Coverage, "autofix-coverage")
	b.ReportMetric(rep.Policies[0].GBHours, "autofix-GBh/oracle")
}

// TestVPAPolicyDoesNotDependOnTheClocksOrigin: the trace's timestamps are
// anonymised; moving its origin (times from 0, or before it) must not change a limit.
func TestVPAPolicyDoesNotDependOnTheClocksOrigin(t *testing.T) {
	vpa := policyNamed(t, baselinePolicies(), "vpa p95")
	// Spikes to 40 GiB, then 60 hours at 20: forgotten after 2.5 half-lives.
	peaks := []float64{40, 40, 40, 40, 40}
	for range 60 {
		peaks = append(peaks, 20)
	}
	limitFrom := func(origin float64) float64 {
		e := vpa.new()
		for i, pk := range peaks {
			start := origin + 3600*float64(i)
			e.observe(peakRun{start: start, end: start + 3540, samples: 60, peak: pk * gib})
		}
		l, _ := e.limit(origin + 3600*float64(len(peaks)))
		return l / gib
	}
	want := limitFrom(1662858720) // the real trace's origin
	for _, origin := range []float64{0, -3600 * 100, -1e9} {
		if got := limitFrom(origin); got != want {
			t.Errorf("times from %g s: limit %.3f GiB, want %.3f as from the trace's origin", origin, got, want)
		}
	}
}

// TestReadPeaksCSVRefusesValuesNoGPUHolds: a sample past a petabyte is a unit error
// or a corrupt file; read as bytes it would overflow the recommender's int64 history
// and score autofix as killing every run.
func TestReadPeaksCSVRefusesValuesNoGPUHolds(t *testing.T) {
	for _, v := range []string{"1e19", "2e15", "1e300"} {
		in := "timestamp_anon,value,container_ip\n1,2,a\n60," + v + ",a\n"
		_, err := readPeaksCSV(strings.NewReader(in), func([]byte, float64, float64) error { return nil })
		if want := `line 3: value "` + v + `"`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("value %s: error %v, want one containing %q", v, err, want)
		}
	}
	in := fmt.Sprintf("timestamp_anon,value,container_ip\n1,%d,a\n", int64(failure.MaxMemoryBytes))
	if _, err := readPeaksCSV(strings.NewReader(in), func([]byte, float64, float64) error { return nil }); err != nil {
		t.Errorf("a petabyte: %v, want it read", err)
	}
}

// TestReadPeaksCSVErrorsQuoteTheContainer: a container id is the file's to say; an
// error naming it must not pass its bytes (a terminal escape) to stderr.
func TestReadPeaksCSVErrorsQuoteTheContainer(t *testing.T) {
	id := "a\x1b]0;owned\x07b"
	in := "timestamp_anon,value,container_ip\n100,1," + id + "\n50,1," + id + "\n"
	c := newRunCutter(3, func(*cutContainer, peakRun) error { return nil })
	_, err := readPeaksCSV(strings.NewReader(in), c.add)
	if err == nil || strings.ContainsAny(err.Error(), "\x1b\x07") || !strings.Contains(err.Error(), `"a\x1b]0;owned\ab"`) {
		t.Errorf("error %q, want the container quoted", err)
	}
}
