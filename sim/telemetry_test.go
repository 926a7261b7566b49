package sim

import (
	"reflect"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

// TestTelemetryVisibility runs the default scenario with each telemetry setting and
// checks what the policy is shown: with all, peaks on failures and on successful
// outcomes; with failures, an OOMKilled run's limit as its peak memory, an eviction's
// limit as its peak local storage, nothing else on any event and nothing on any
// outcome; with none, no usage anywhere.
func TestTelemetryVisibility(t *testing.T) {
	for _, tel := range Telemetries() {
		t.Run(string(tel), func(t *testing.T) {
			s := defaultScenario(t)
			s.Telemetry = tel
			rec := &recorder{}
			res, err := Run(s, rec, Options{Jobs: 2000})
			if err != nil {
				t.Fatal(err)
			}
			if res.Telemetry != tel {
				t.Errorf("Result.Telemetry = %q, want %q", res.Telemetry, tel)
			}
			var ooms, evictions, measuredOutcomes, measuredOthers int
			for _, ev := range rec.events {
				u, lim := ev.Failure.Usage, ev.Job.Resources
				switch ev.Failure.Reason {
				case "OOMKilled":
					ooms++
					want := failure.Usage{PeakMemoryBytes: lim.MemoryBytes}
					if tel == TelemetryNone {
						want = failure.Usage{}
					}
					if tel == TelemetryAll {
						want.PeakGPUMemoryBytes, want.PeakEphemeralStorageBytes = u.PeakGPUMemoryBytes, u.PeakEphemeralStorageBytes
					}
					if u != want {
						t.Errorf("OOMKilled %s at limit %d: usage %+v, want %+v", ev.ID, lim.MemoryBytes, u, want)
					}
				case "Evicted":
					evictions++
					want := failure.Usage{PeakEphemeralStorageBytes: lim.EphemeralStorageBytes}
					if tel == TelemetryNone {
						want = failure.Usage{}
					}
					if tel == TelemetryAll {
						want.PeakMemoryBytes, want.PeakGPUMemoryBytes = u.PeakMemoryBytes, u.PeakGPUMemoryBytes
					}
					if u != want {
						t.Errorf("Evicted %s at limit %d: usage %+v, want %+v", ev.ID, lim.EphemeralStorageBytes, u, want)
					}
				default:
					if u != (failure.Usage{}) {
						measuredOthers++
						if tel != TelemetryAll {
							t.Errorf("%s failure %s carries usage %+v with telemetry %s", ev.Failure.Reason, ev.ID, u, tel)
						}
					}
				}
			}
			for _, h := range rec.history {
				for _, o := range h {
					if o.Usage != (failure.Usage{}) {
						measuredOutcomes++
						if tel != TelemetryAll {
							t.Fatalf("outcome %+v carries usage with telemetry %s", o, tel)
						}
					}
				}
			}
			if ooms == 0 || evictions == 0 {
				t.Fatalf("%d OOMKilled and %d evicted runs: want some of each", ooms, evictions)
			}
			if tel == TelemetryAll && (measuredOutcomes == 0 || measuredOthers == 0) {
				t.Errorf("with all, %d outcomes and %d other failures measured: want peaks on both", measuredOutcomes, measuredOthers)
			}
		})
	}
}

// TestTelemetryAllIsTheDefault: a scenario that does not set telemetry measures all,
// and naming it changes nothing.
func TestTelemetryAllIsTheDefault(t *testing.T) {
	s := defaultScenario(t)
	if s.TelemetrySource() != TelemetryAll {
		t.Fatalf("default telemetry %q, want all", s.TelemetrySource())
	}
	p, _ := Baseline("vpa")
	unset, err := Run(s, p, Options{Jobs: 1500})
	if err != nil {
		t.Fatal(err)
	}
	s.Telemetry = TelemetryAll
	set, err := Run(s, p, Options{Jobs: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(unset, set) {
		t.Errorf("telemetry all changed the result:\n%+v\n%+v", unset, set)
	}
}

// TestClassifyLabelsTheHistory: with Options.Classify, the outcome of every failed
// attempt in the history carries the category its failure event was given (as the
// ledger records it); without, none does; successes never do.
func TestClassifyLabelsTheHistory(t *testing.T) {
	s := defaultScenario(t)
	seen := map[string]bool{}
	classify := func(ev *failure.Event) failure.Category {
		seen[ev.ID] = true
		if ev.Failure.Reason == "OOMKilled" {
			return failure.OOMMemory
		}
		return failure.Unknown
	}
	for _, withClassify := range []bool{false, true} {
		rec := &recorder{}
		opts := Options{Jobs: 1500}
		if withClassify {
			opts.Classify = classify
		}
		if _, err := Run(s, rec, opts); err != nil {
			t.Fatal(err)
		}
		labelled, failed := 0, 0
		for _, h := range rec.history {
			for _, o := range h {
				switch {
				case o.Succeeded && o.Category != "":
					t.Fatalf("a success labelled %q", o.Category)
				case !o.Succeeded:
					failed++
					if o.Category != "" {
						labelled++
					}
				}
			}
		}
		if withClassify && labelled != failed || !withClassify && labelled != 0 || failed == 0 {
			t.Errorf("Classify set %v: %d of %d failed outcomes labelled", withClassify, labelled, failed)
		}
		if withClassify {
			for _, ev := range rec.events {
				if !seen[ev.ID] {
					t.Errorf("event %s shown to the policy was not classified", ev.ID)
				}
			}
		}
	}
}

func TestParseTelemetry(t *testing.T) {
	for _, name := range []string{"all", "failures", "none"} {
		if got, err := ParseTelemetry(name); err != nil || string(got) != name {
			t.Errorf("ParseTelemetry(%q) = %q, %v", name, got, err)
		}
	}
	if _, err := ParseTelemetry("some"); err == nil || !strings.Contains(err.Error(), `want all, failures or none, got "some"`) {
		t.Errorf("ParseTelemetry(some) = %v", err)
	}
	if _, err := ParseScenario([]byte(strings.Replace(string(mustRead(t, "scenarios/default.yaml")), "noise: 0.05", "noise: 0.05\ntelemetry: some", 1))); err == nil ||
		!strings.Contains(err.Error(), `telemetry: want all, failures or none, got "some"`) {
		t.Errorf("a scenario with telemetry: some: %v, want the field named", err)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := scenarioFS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestHeldOutScenariosAreValid: the scenarios kept out of training and tuning
// (heldout/) load, and run.
func TestHeldOutScenariosAreValid(t *testing.T) {
	for _, name := range []string{"heldout/drifting-platform.yaml", "heldout/frontier-lab.yaml"} {
		s, err := LoadScenario(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p, _ := Baseline("double")
		if r, err := Run(s, p, Options{Jobs: 300}); err != nil || r.Failed == 0 {
			t.Errorf("%s: %d failed, %v", name, r.Failed, err)
		}
	}
}
