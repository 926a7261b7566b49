package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/ledger/ledgertest"
)

var correctedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// correctionEvent is a failure event as the watcher reports one; its log tail holds
// characters JSON encoders like to escape.
func correctionEvent(t *testing.T, id, logTail string) *failure.Event {
	t.Helper()
	data, err := json.Marshal(map[string]any{
		"id": id, "time": "2026-03-01T11:00:00Z", "source": "kubernetes",
		"job": map[string]any{"namespace": "ml", "name": "train-" + id, "kind": "training", "attempt": 1,
			"resources": map[string]any{"cpu": "8", "memory": "16Gi", "gpu": 1, "gpuType": "nvidia-a100-40gb"}},
		"failure": map[string]any{"reason": "Error", "exitCode": 1, "logTail": logTail, "durationSeconds": 120},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := failure.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return &ev
}

// ledgerArgs are the flags that name the ledger at dsn.
func ledgerArgs(dsn string) []string {
	if ledger.IsPostgres(dsn) {
		return []string{"--db", dsn}
	}
	return []string{"--data-dir", filepath.Dir(dsn)}
}

// recordEvents records evs as remediations waiting for review.
func recordEvents(t *testing.T, store *ledger.Store, evs ...*failure.Event) {
	t.Helper()
	var entries []ledger.Entry
	for i, ev := range evs {
		entries = append(entries, ledger.Entry{EventID: ev.ID, Event: ev, ChainID: "chain-" + ev.ID, State: ledger.PendingReview,
			Actor: "policy", ReceivedAt: correctedAt.Add(-time.Hour + time.Duration(i)*time.Second)})
	}
	if _, err := store.Record(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
}

// readLabelled reads a file the way train-classifier does.
func readLabelled(t *testing.T, path string) []classifier.Labelled {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	items, err := classifier.ReadLabelled(f)
	if err != nil {
		t.Fatalf("classifier.ReadLabelled(%s) = %v", path, err)
	}
	return items
}

// TestLedgerCorrectionsAreLabelledEvents: `autofix ledger corrections` writes each
// corrected remediation's recorded event with the correction in force, in the corpus
// format classifier.ReadLabelled reads, on both backends.
func TestLedgerCorrectionsAreLabelledEvents(t *testing.T) {
	ledgertest.ForEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		ctx := context.Background()
		store, err := ledger.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = store.Close() }()
		a := correctionEvent(t, "ev-a", "Traceback (most recent call last):\nAttributeError: 'NoneType' object has no attribute 'shape' <&>")
		b := correctionEvent(t, "ev-b", "RuntimeError: CUDA error: an illegal memory access was encountered")
		recordEvents(t, store, a, b, correctionEvent(t, "ev-untouched", "Killed"))
		for _, c := range []struct {
			id        string
			cat       failure.Category
			retryable bool
			actor     string
			note      string
			at        time.Time
		}{
			{"ev-a", failure.DataError, false, "val", "a corrupt shard", correctedAt},
			{"ev-b", failure.Hardware, true, "ada", "", correctedAt.Add(time.Minute)},
			{"ev-a", failure.UserCode, false, "ada", "no: the loader drops the batch", correctedAt.Add(2 * time.Minute)},
		} {
			if err := store.Correct(ctx, c.id, c.cat, c.retryable, c.actor, c.note, c.at); err != nil {
				t.Fatal(err)
			}
		}

		out := filepath.Join(t.TempDir(), "corrections.jsonl")
		code, stdout, errOut := runCmd(t, "", append([]string{"ledger", "corrections", "--out", out}, ledgerArgs(dsn)...)...)
		if code != 0 || stdout != "" || !strings.Contains(errOut, "wrote 2 corrected events") {
			t.Fatalf("ledger corrections: exit %d, stdout %q, stderr %q; want 0 and 2 written", code, stdout, errOut)
		}
		items := readLabelled(t, out)
		want := []struct {
			ev    *failure.Event
			label classifier.Label
			note  string
		}{
			{b, classifier.Label{Category: failure.Hardware, Retryable: true}, "corrected by ada at 2026-03-01T12:01:00Z (remediation ev-b)"},
			{a, classifier.Label{Category: failure.UserCode}, "corrected by ada at 2026-03-01T12:02:00Z (remediation ev-a): no: the loader drops the batch"},
		}
		if len(items) != len(want) {
			t.Fatalf("ReadLabelled read %d events, want %d", len(items), len(want))
		}
		raw, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
		for i, w := range want {
			got := items[i]
			// The corpus's "source" groups what cross-validation must keep together:
			// the job's template, whose retries print the same text.
			wantEvent := *w.ev
			wantEvent.Source = "ledger:" + w.ev.HistoryKey()
			if !reflect.DeepEqual(got.Event, wantEvent) {
				t.Errorf("line %d: event %+v, want the recorded %+v", i+1, got.Event, wantEvent)
			}
			if got.Expected != w.label || got.Source != "ledger:"+w.ev.HistoryKey() {
				t.Errorf("line %d: expected %+v, source %q; want %+v, ledger:%s", i+1, got.Expected, got.Source, w.label, w.ev.HistoryKey())
			}
			var extra struct{ Note string }
			if err := json.Unmarshal([]byte(lines[i]), &extra); err != nil || extra.Note != w.note {
				t.Errorf("line %d: note %q (%v), want %q", i+1, extra.Note, err, w.note)
			}
		}
		if !strings.Contains(lines[1], "<&>") {
			t.Errorf("the log tail's <&> is escaped in the file: %s", lines[1])
		}
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("the file's mode: %v (%v), want 0600", fi.Mode().Perm(), err)
		}

		// --since: the corrections in force made since then; a duration counts back from now.
		code, stdout, errOut = runCmd(t, "", append([]string{"ledger", "corrections", "--out", "-", "--since", "2026-03-01T12:01:30Z"},
			ledgerArgs(dsn)...)...)
		if code != 0 || strings.Count(stdout, "\n") != 1 || !strings.Contains(stdout, `"id":"ev-a"`) {
			t.Errorf("--since between the corrections: exit %d, %q, %q; want ev-a's alone", code, stdout, errOut)
		}
		code, stdout, _ = runCmd(t, "", append([]string{"ledger", "corrections", "--out", "-", "--since", "1h"}, ledgerArgs(dsn)...)...)
		if code != 0 || stdout != "" {
			t.Errorf("--since 1h (the corrections are older): exit %d, %q; want nothing", code, stdout)
		}
	})
}

// TestLedgerCorrectionsLeaveOutWhatCannotBeALabel: a stored event that does not
// decode, a category the taxonomy no longer has and a line over the corpus reader's
// limit are left out and counted; the rest of the file still reads.
func TestLedgerCorrectionsLeaveOutWhatCannotBeALabel(t *testing.T) {
	dir := t.TempDir()
	dsn := filepath.Join(dir, "ledger.db")
	ctx := context.Background()
	store, err := ledger.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	big := bigEvent(t, "ev-big", failure.MaxPayload-500)
	recordEvents(t, store, correctionEvent(t, "ev-good", "Killed"), correctionEvent(t, "ev-bad", "Killed"),
		correctionEvent(t, "ev-retired", "Killed"), big)
	for _, id := range []string{"ev-good", "ev-bad", "ev-retired", "ev-big"} {
		if err := store.Correct(ctx, id, failure.UserCode, false, "val", strings.Repeat("n", ledger.MaxCorrectionNote), correctedAt); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`UPDATE events SET event_json = '{"id":"ev-bad"}' WHERE event_id = 'ev-bad'`,
		`UPDATE corrections SET category = 'retired_category' WHERE event_id = 'ev-retired'`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Close()

	out := filepath.Join(dir, "corrections.jsonl")
	code, _, errOut := runCmd(t, "", "ledger", "corrections", "--data-dir", dir, "--out", out)
	if code != 0 {
		t.Fatalf("ledger corrections: exit %d, %q", code, errOut)
	}
	for _, want := range []string{"wrote 1 corrected events", "left out 3", "correction of ev-bad left out: the stored event: job.name",
		`correction of ev-retired left out: the category "retired_category"`, "correction of ev-big left out: its line is"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if items := readLabelled(t, out); len(items) != 1 || items[0].Event.ID != "ev-good" {
		t.Errorf("the file holds %d events, want ev-good's alone", len(items))
	}
}

// bigEvent is a failure event whose stored JSON is size bytes: under the decoder's
// limit, so that it is recorded and read back, but too close to it for its labelled
// line, with a long note, to stay under.
func bigEvent(t *testing.T, id string, size int) *failure.Event {
	t.Helper()
	ev := correctionEvent(t, id, "Killed")
	ev.Job.Labels = map[string]string{}
	for i := range failure.MaxEntries - 1 {
		ev.Job.Labels[fmt.Sprintf("l%03d", i)] = strings.Repeat("x", failure.MaxValueLength)
	}
	ev.Job.Labels["pad"] = ""
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	pad := size - len(data)
	if pad < 0 || pad > failure.MaxValueLength {
		t.Fatalf("the big event is %d bytes before its padding; cannot make it %d", len(data), size)
	}
	ev.Job.Labels["pad"] = strings.Repeat("x", pad)
	if data, err = json.Marshal(ev); err != nil || len(data) != size {
		t.Fatalf("the big event is %d bytes (%v), want %d", len(data), err, size)
	}
	if _, err := failure.Decode(data); err != nil {
		t.Fatalf("the big event does not decode: %v", err)
	}
	return ev
}

// TestLedgerCorrectionsFlags: --out is required, --since must be a time or a
// duration, and a failed run leaves no file behind.
func TestLedgerCorrectionsFlags(t *testing.T) {
	dir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	_ = store.Close()
	out := filepath.Join(dir, "out.jsonl")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", dir}, "--out: required"},
		{[]string{"--data-dir", dir, "--out", out, "--since", "yesterday"}, "--since"},
		{[]string{"--data-dir", dir, "--out", out, "--since", "-5h"}, "--since"},
		{[]string{"--data-dir", filepath.Join(dir, "nowhere"), "--out", out}, "no ledger at"},
		{[]string{"--data-dir", dir, "--out", filepath.Join(dir, "no-such-dir", "out.jsonl")}, "--out"},
	} {
		code, _, errOut := runCmd(t, "", append([]string{"ledger", "corrections"}, c.args...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("ledger corrections %v: exit %d, %q; want a failure naming %s", c.args, code, errOut, c.want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "out.jsonl") {
			t.Errorf("a failed run left %s", e.Name())
		}
	}
}
