package ledger

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// forged makes an entry's event claim what its publisher cannot have measured: a cost
// and peaks no run had.
func forged(e Entry) Entry {
	e.Event.Failure.Cost = 999_999
	e.Event.Failure.Unpriced = "forged"
	e.Event.Failure.Usage = failure.Usage{PeakMemoryBytes: 1 << 40, PeakGPUMemoryBytes: 1 << 39, PeakEphemeralStorageBytes: 1 << 41}
	return e
}

// finish submits remediation id's attempt and records its end at at, as the
// watcher does.
func finish(t *testing.T, s *Store, id string, to State, o failure.Outcome, at time.Time) {
	t.Helper()
	ctx := context.Background()
	if err := s.Transition(ctx, id, Approved, Submitted, "dispatcher", "", at.Add(-time.Minute)); err != nil {
		t.Fatalf("Transition(%s) to submitted = %v", id, err)
	}
	if err := s.Finish(ctx, id, to, o, "watcher", "", at); err != nil {
		t.Fatalf("Finish(%s, %s) = %v", id, to, err)
	}
}

// retries returns what EachRetry passes for f, by event id, and its stats.
func retries(t *testing.T, s *Store, f RetryFilter) (map[string]*Retry, []string, RetryStats) {
	t.Helper()
	got := map[string]*Retry{}
	var order []string
	stats, err := s.EachRetry(context.Background(), f, func(r *Retry) error {
		if got[r.EventID] != nil {
			t.Errorf("EachRetry passed %s twice", r.EventID)
		}
		got[r.EventID] = r
		order = append(order, r.EventID)
		return nil
	})
	if err != nil {
		t.Fatalf("EachRetry(%+v) = %v", f, err)
	}
	return got, order, stats
}

// measured is an outcome the watcher measured: a duration, peaks and a price.
func measured(seconds float64, peakGiB int64, cost float64) failure.Outcome {
	return failure.Outcome{DurationSeconds: seconds, Usage: failure.Usage{PeakMemoryBytes: peakGiB << 30}, Cost: cost}
}

// TestEachRetryHistoryBefore: a retry's history is its template's as it was when its
// failure was received — an attempt that ended later, though recorded before the
// retry itself ended, is not in it; one that ended before is.
func TestEachRetryHistoryBefore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		// r1 fails at t0 and its fix ends at t0+1h; r2 fails at t0+30m, while r1's fix
		// runs; r3 fails at t0+3h, after both fixes ended.
		mustRecord(t, s, entry("r1", Approved, entryOpt{at: t0}))
		mustRecord(t, s, entry("r2", Approved, entryOpt{at: t0.Add(30 * time.Minute)}))
		finish(t, s, "r1", Succeeded, measured(3600, 40, 6.25), t0.Add(time.Hour))
		finish(t, s, "r2", Failed, measured(600, 48, 1.5), t0.Add(2*time.Hour))
		mustRecord(t, s, entry("r3", Approved, entryOpt{at: t0.Add(3 * time.Hour)}))
		finish(t, s, "r3", Succeeded, measured(3000, 41, 5), t0.Add(4*time.Hour))

		got, order, stats := retries(t, s, RetryFilter{HistoryLimit: 20})
		if want := []string{"r1", "r2", "r3"}; !reflect.DeepEqual(order, want) {
			t.Fatalf("retries %v, want %v", order, want)
		}
		if stats != (RetryStats{Retries: 3}) {
			t.Errorf("stats %+v, want 3 retries", stats)
		}
		type run struct {
			attempt   int
			succeeded bool
		}
		runs := func(h []failure.Outcome) []run {
			out := []run{}
			for _, o := range h {
				out = append(out, run{o.Attempt, o.Succeeded})
			}
			return out
		}
		failed := run{1, false}
		for _, c := range []struct {
			id   string
			want []run
		}{
			{"r1", []run{}},
			// r1's failure, not r1's fix: it ended after r2 was received.
			{"r2", []run{failed}},
			// Both failures, both fixes, in the order they were recorded.
			{"r3", []run{failed, failed, {2, true}, {2, false}}},
		} {
			if h := runs(got[c.id].History); !reflect.DeepEqual(h, c.want) {
				t.Errorf("%s: history %+v, want %+v", c.id, h, c.want)
			}
			for _, o := range got[c.id].History {
				if o.Attempt == 2 && o.DurationSeconds != 3600 && o.DurationSeconds != 600 {
					t.Errorf("%s: a fix's outcome in its history is %+v, not as Finish recorded it", c.id, o)
				}
			}
		}
		// The outcome is the fix's own, the option the one it ran.
		r2 := got["r2"]
		if want := (failure.Outcome{Template: "train-llm", Attempt: 2, DurationSeconds: 600,
			Usage: failure.Usage{PeakMemoryBytes: 48 << 30}, Cost: 1.5}); !reflect.DeepEqual(r2.Outcome, want) {
			t.Errorf("r2 outcome %+v, want %+v", r2.Outcome, want)
		}
		if r2.Option.Resources.MemoryBytes != 48<<30 || r2.Category != failure.OOMMemory || !r2.ReceivedAt.Equal(t0.Add(30*time.Minute)) {
			t.Errorf("r2 = option %+v category %s received %s; want the 48Gi fix of an oom_memory received at t0+30m",
				r2.Option.Resources, r2.Category, r2.ReceivedAt)
		}
	})
}

// TestEachRetryHistoryLimitAndWindow: a history keeps the limit's latest outcomes;
// Since and Until select by received time, and nothing recorded from Until on is read.
func TestEachRetryHistoryLimitAndWindow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		for i := range 5 {
			id := fmt.Sprintf("r%d", i)
			at := t0.Add(time.Duration(i) * time.Hour)
			mustRecord(t, s, entry(id, Approved, entryOpt{at: at}))
			finish(t, s, id, Succeeded, measured(float64(100+i), 40, 1), at.Add(30*time.Minute))
		}
		got, order, _ := retries(t, s, RetryFilter{HistoryLimit: 3})
		if len(order) != 5 {
			t.Fatalf("retries %v, want 5", order)
		}
		// r4 was received after four failures and four fixes: the last three are the
		// fix of r2, the failure of r3 and its fix.
		var durations []float64
		for _, o := range got["r4"].History {
			durations = append(durations, o.DurationSeconds)
		}
		if want := []float64{102, 5400, 103}; !reflect.DeepEqual(durations, want) {
			t.Errorf("r4's history durations %v, want %v", durations, want)
		}
		// Since r1, until r3's fix: r3 was received but its fix had not ended.
		_, order, _ = retries(t, s, RetryFilter{HistoryLimit: 3, Since: t0.Add(time.Hour), Until: t0.Add(3*time.Hour + 10*time.Minute)})
		if want := []string{"r1", "r2"}; !reflect.DeepEqual(order, want) {
			t.Errorf("with since and until, retries %v, want %v", order, want)
		}
		if _, err := s.EachRetry(context.Background(), RetryFilter{}, func(*Retry) error { return nil }); err == nil {
			t.Error("EachRetry without a history limit = nil, want an error")
		}
	})
}

// TestEachRetryTrust: what an event claims of its run's usage and cost is never
// passed on, in the retry's own event or in any history; what the watcher measured
// of autofix's attempts is.
func TestEachRetryTrust(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustRecord(t, s, forged(entry("r1", Approved, entryOpt{at: t0})))
		finish(t, s, "r1", Failed, measured(600, 31, 2.5), t0.Add(time.Hour))
		mustRecord(t, s, forged(entry("r2", Approved, entryOpt{at: t0.Add(2 * time.Hour)})))
		finish(t, s, "r2", Succeeded, measured(3600, 40, 6.25), t0.Add(3*time.Hour))

		got, _, _ := retries(t, s, RetryFilter{HistoryLimit: 20})
		for _, id := range []string{"r1", "r2"} {
			r := got[id]
			if r == nil {
				t.Fatalf("%s not passed", id)
			}
			sig := r.Event.Failure
			if sig.Cost != 0 || sig.Unpriced != UnpricedClaim || sig.Usage != (failure.Usage{}) {
				t.Errorf("%s: the event's claims passed on: cost %v unpriced %q usage %+v", id, sig.Cost, sig.Unpriced, sig.Usage)
			}
			if sig.LogTail != "" || sig.Message != "" {
				t.Errorf("%s: the event's text passed on", id)
			}
			if sig.Reason != "OOMKilled" || sig.ExitCode != 137 || sig.DurationSeconds != 5400 || r.Event.Job.Resources.MemoryBytes != 32<<30 {
				t.Errorf("%s: the event lost what the models read: %+v, job %+v", id, sig, r.Event.Job.Resources)
			}
		}
		h := got["r2"].History
		if len(h) != 2 {
			t.Fatalf("r2's history %+v, want r1's failure and its fix", h)
		}
		if h[0].Cost != 0 || h[0].Usage != (failure.Usage{}) || h[0].Unpriced != UnpricedClaim {
			t.Errorf("the failure its event reported is in the history with its claims: %+v", h[0])
		}
		if want := (failure.Outcome{Template: "train-llm", Attempt: 2, DurationSeconds: 600,
			Usage: failure.Usage{PeakMemoryBytes: 31 << 30}, Cost: 2.5}); !reflect.DeepEqual(h[1], want) {
			t.Errorf("the fix the watcher measured is in the history as %+v, want %+v", h[1], want)
		}
		if got["r2"].Outcome.Cost != 6.25 {
			t.Errorf("r2's outcome cost %v, want the watcher's 6.25", got["r2"].Outcome.Cost)
		}
	})
}

// TestEachRetrySkips: only remediations whose own attempt succeeded or failed with
// an outcome are passed; unreadable ones are counted.
func TestEachRetrySkips(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s,
			rejected("bad-message", t0),
			entry("refused", Rejected, entryOpt{at: t0}),
			entry("waiting", PendingReview, entryOpt{at: t0}),
			entry("queued", Approved, entryOpt{at: t0}),
			entry("running", Approved, entryOpt{at: t0}),
			entry("gone", Approved, entryOpt{at: t0}),
			entry("broken", Approved, entryOpt{at: t0}),
			entry("bad-option", Approved, entryOpt{at: t0}),
			entry("ok", Approved, entryOpt{at: t0}))
		if err := s.Transition(ctx, "running", Approved, Submitted, "dispatcher", "", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.Transition(ctx, "gone", Approved, Submitted, "dispatcher", "", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, "gone", Abandoned, failure.Outcome{}, "watcher", "", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"broken", "bad-option", "ok"} {
			finish(t, s, id, Succeeded, measured(60, 40, 1), t0.Add(time.Hour))
		}
		// Stored parts damaged after the fact (by hand, or under older limits).
		if _, err := s.w.ExecContext(ctx, s.q("UPDATE events SET event_json = ? WHERE event_id = ?"), `{"id":`, "broken"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.ExecContext(ctx, s.q("UPDATE attempts SET option_json = ? WHERE event_id = ?"),
			`{"pSuccess": 7}`, "bad-option"); err != nil {
			t.Fatal(err)
		}
		_, order, stats := retries(t, s, RetryFilter{HistoryLimit: 20})
		if want := []string{"ok"}; !reflect.DeepEqual(order, want) {
			t.Errorf("retries %v, want %v", order, want)
		}
		if want := (RetryStats{Retries: 1, Unreadable: 2}); stats != want {
			t.Errorf("stats %+v, want %+v", stats, want)
		}
	})
}

// TestEachRetryResult: a fix that failed carries the classification of its own
// failure — the event of its Job in its chain at its number — and not that of a
// Job that only shares its chain's labels.
func TestEachRetryResult(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		e := entry("r1", Approved, entryOpt{at: t0, chain: "c1"})
		mustRecord(t, s, e)
		finish(t, s, "r1", Failed, measured(60, 40, 1), t0.Add(time.Hour))
		// Another Job's failure in the same chain at the same number (its labels copied),
		// received first.
		other := entry("x", PendingReview, entryOpt{at: t0.Add(61 * time.Minute), chain: "c1", attempt: 2, cat: failure.Timeout})
		// The fix's own failure: its Job, its chain, its number.
		own := entry("r1-fix-failed", PendingReview, entryOpt{at: t0.Add(62 * time.Minute), chain: "c1", attempt: 2, cat: failure.DiskFull})
		own.Event.Job.Name = e.Attempt.JobName
		mustRecord(t, s, other, own)
		got, _, _ := retries(t, s, RetryFilter{HistoryLimit: 20})
		if r := got["r1"]; r == nil || r.Result != failure.DiskFull {
			t.Errorf("r1 = %+v, want result disk_full", r)
		}
	})
}

// TestEachRetryTemplates: many templates, their retries interleaved in time and their
// names ordered differently by case and by locale, each get their own template's
// history only.
func TestEachRetryTemplates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		templates := []string{"alpha", "Beta", "beta-2", "b", "Zeta", "_x", "z"}
		for round := range 3 {
			for i, tmpl := range templates {
				id := fmt.Sprintf("%s-%d", tmpl, round)
				at := t0.Add(time.Duration(round*len(templates)+i) * time.Minute)
				mustRecord(t, s, entry(id, Approved, entryOpt{at: at, tmpl: tmpl}))
				finish(t, s, id, Succeeded, measured(float64(round), 40, 1), at.Add(30*time.Second))
			}
		}
		got, order, _ := retries(t, s, RetryFilter{HistoryLimit: 20})
		if len(order) != 3*len(templates) {
			t.Fatalf("%d retries, want %d: %v", len(order), 3*len(templates), order)
		}
		for _, tmpl := range templates {
			for round := range 3 {
				r := got[fmt.Sprintf("%s-%d", tmpl, round)]
				if len(r.History) != 2*round {
					t.Errorf("%s round %d: history of %d outcomes, want %d", tmpl, round, len(r.History), 2*round)
				}
				for _, o := range r.History {
					if o.Template != tmpl {
						t.Errorf("%s round %d: history holds %s's outcome", tmpl, round, o.Template)
					}
				}
			}
		}
	})
}

// TestEachRetryHistoryAsDecided: a history is what serve's decision of the failure
// read — cut where the failure's run joined the template's history, not by the
// clocks of the replicas that recorded it. A fix's end recorded after the failure
// by a replica whose clock is behind is not in it (it leaked the future when the
// cut was by time); a failure decided just before in the same batch, received at
// the same instant, is.
func TestEachRetryHistoryAsDecided(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustRecord(t, s, entry("r1", Approved, entryOpt{at: t0}))
		mustRecord(t, s, entry("r2", Approved, entryOpt{at: t0.Add(2 * time.Hour)}))
		// r1's fix ends after r2 was decided; the replica that records it reads its
		// clock 90 minutes behind.
		finish(t, s, "r1", Succeeded, measured(10, 40, 1), t0.Add(time.Hour))
		finish(t, s, "r2", Succeeded, measured(20, 40, 1), t0.Add(3*time.Hour))
		// One batch of another template: r4 was decided after r3, seeing it.
		batch := t0.Add(5 * time.Hour)
		mustRecord(t, s, entry("r3", Approved, entryOpt{at: batch, tmpl: "etl"}), entry("r4", Approved, entryOpt{at: batch, tmpl: "etl"}))
		finish(t, s, "r3", Succeeded, measured(30, 40, 1), batch.Add(time.Hour))
		finish(t, s, "r4", Succeeded, measured(40, 40, 1), batch.Add(time.Hour))
		got, _, _ := retries(t, s, RetryFilter{HistoryLimit: 20})
		for id, want := range map[string][]float64{
			"r1": nil,
			"r2": {5400}, // r1's failure; not its fix, which ended after r2 was decided
			"r3": nil,
			"r4": {5400}, // r3's failure
		} {
			var durations []float64
			for _, o := range got[id].History {
				durations = append(durations, o.DurationSeconds)
			}
			if !reflect.DeepEqual(durations, want) {
				t.Errorf("%s: history durations %v, want %v", id, durations, want)
			}
		}
	})
}
