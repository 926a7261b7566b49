package rulesdiff

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/examples"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/ledger/ledgertest"
	"github.com/autofix/autofix/rules"
)

// sampleEvents are the events that ship with autofix (examples.Events).
func sampleEvents(t testing.TB) []failure.Event {
	t.Helper()
	var out []failure.Event
	sc := bufio.NewScanner(bytes.NewReader(examples.Events))
	sc.Buffer(nil, failure.MaxPayload)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		ev, err := failure.Decode(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// oomKilledRule is the embedded rule of OOMKilled containers, as memory.yaml says it.
const oomKilledRule = `    category: oom_memory
    retryable: true
    action: increase_memory
    confidence: 0.97`

// candidateRules writes the embedded rules to a directory, with the rule of
// OOMKilled containers changed to say user code, not retryable.
func candidateRules(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	names, err := fs.Glob(rules.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data, err := fs.ReadFile(rules.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "memory.yaml" {
			s := string(data)
			if strings.Count(s, oomKilledRule) != 1 {
				t.Fatalf("memory.yaml no longer holds the oom-killed rule as this test expects:\n%s", oomKilledRule)
			}
			data = []byte(strings.Replace(s, oomKilledRule, "    category: user_code\n    retryable: false\n    action: no_retry\n    confidence: 0.97", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// serving is the classifier of src as serve would build it from the default
// configuration.
func serving(t testing.TB, src classifier.Sources) Classifier {
	t.Helper()
	c, err := classifier.LoadDefault(src, classifier.Options{MinConfidence: 0.5, Authority: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReplayAgainstARecordedLedger records 250 failure events (the samples over and
// over) and some rejected messages, and replays the last 120 through the embedded
// classifier and a candidate whose rule of OOMKilled containers says user code: the
// changes are exactly the OOMKilled events among the newest 120, over more than one
// page of the ledger.
func TestReplayAgainstARecordedLedger(t *testing.T) {
	samples := sampleEvents(t)
	if samples[0].ID != "sample-oomkilled" || samples[0].Failure.Reason != "OOMKilled" {
		t.Fatalf("the first sample event is %s, not the OOMKilled one this test expects", samples[0].ID)
	}
	current, candidate := serving(t, classifier.Sources{}), serving(t, classifier.Sources{RulesDir: candidateRules(t)})
	ledgertest.ForEachDSN(t, func(t testing.TB, dsn string) {
		ctx := context.Background()
		store, err := ledger.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = store.Close() }()
		base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
		var entries []ledger.Entry
		var wantChanged []string
		for i := range 250 {
			ev := samples[i%len(samples)]
			ev.ID = fmt.Sprintf("ev-%03d-%s", i, ev.ID)
			ev.Job.Name = fmt.Sprintf("%s-%03d", ev.Job.Name, i)
			cl, _, err := current.ClassifyContext(ctx, &ev)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, ledger.Entry{Event: &ev, ChainID: ev.Job.Namespace + "/" + ev.Job.Name, State: ledger.PendingReview,
				Recommendation: &failure.Recommendation{EventID: ev.ID, Classification: cl, Chosen: -1, Options: []failure.Option{}},
				Actor:          "policy", Reason: "kept for review", ReceivedAt: base.Add(time.Duration(i) * time.Second)})
			if i%25 == 0 {
				entries = append(entries, ledger.Entry{EventID: fmt.Sprintf("kafka:failures/0/%d", i), Error: "payload: not valid JSON",
					ReceivedAt: base.Add(time.Duration(i)*time.Second + 500*time.Millisecond)})
			}
			if i >= 130 && i%len(samples) == 0 {
				wantChanged = append([]string{ev.ID}, wantChanged...)
			}
		}
		if _, err := store.Record(ctx, entries); err != nil {
			t.Fatal(err)
		}
		rep, err := Replay(ctx, store, 120, current, candidate)
		if err != nil {
			t.Fatal(err)
		}
		want := Summary{Replayed: 120, Skipped: 4, Changed: 12, CategoryChanges: 12, RetryChanges: 12, NoLongerRetried: 12, ActionChanges: 12}
		if rep.Summary != want {
			t.Errorf("summary = %+v, want %+v", rep.Summary, want)
		}
		var changed []string
		for _, c := range rep.Changes {
			changed = append(changed, c.ID)
			if c.Current.Category != failure.OOMMemory || !c.Current.Retryable || c.Candidate.Category != failure.UserCode ||
				c.Candidate.Retryable || c.Recorded != failure.OOMMemory || !slices.Contains(c.Candidate.Rules, "oom-killed") {
				t.Errorf("change %+v: want oom_memory (recorded, current) -> user_code by oom-killed, no longer retried", c)
			}
		}
		if !slices.Equal(changed, wantChanged) {
			t.Errorf("changed events = %v\nwant (newest first) %v", changed, wantChanged)
		}
		if want := []Cell{{failure.OOMMemory, failure.UserCode, 12}}; !slices.Equal(rep.Matrix, want) {
			t.Errorf("matrix = %v, want %v", rep.Matrix, want)
		}

		// Asking for more than the ledger holds replays all of it.
		rep, err = Replay(ctx, store, 1000, current, candidate)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Summary.Replayed != 250 || rep.Summary.Skipped != 10 || rep.Summary.Changed != 25 {
			t.Errorf("replay of all: %+v, want 250 replayed, 10 skipped, 25 changed", rep.Summary)
		}
		// The candidate against itself changes nothing.
		rep, err = Replay(ctx, store, 1000, current, current)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Summary.Changed != 0 || len(rep.Changes) != 0 {
			t.Errorf("replay of the current against itself: %+v, want no change", rep.Summary)
		}
	})
}

func TestReplayOfAnEmptyLedgerAndBadCounts(t *testing.T) {
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	c := serving(t, classifier.Sources{})
	rep, err := Replay(ctx, store, 10, c, c)
	if err != nil || rep.Summary != (Summary{}) {
		t.Errorf("Replay of an empty ledger = %+v, %v; want nothing replayed", rep.Summary, err)
	}
	for _, n := range []int{0, -1} {
		if _, err := Replay(ctx, store, n, c, c); err == nil {
			t.Errorf("Replay of %d events: no error", n)
		}
	}
}
