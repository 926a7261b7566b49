package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/ledger/ledgertest"
	"github.com/autofix/autofix/models"
)

// trainT0 is when the recorded retries start.
var trainT0 = time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)

const (
	forgedCost = 999_999
	forgedPeak = 1 << 40
	// watcherCost is what the watcher priced every attempt at.
	watcherCost = 2.5
)

// plannedRetry is one remediation the test records: its failure received at
// received, its fix of memory mem (the need being need) ending at ended.
type plannedRetry struct {
	id, tmpl        string
	ns              string // "data" when empty
	received, ended time.Time
	need, mem       int64
}

func (p plannedRetry) succeeded() bool { return p.mem >= p.need }

// recordedAt is an outcome of a template's history and when it was recorded.
type recordedAt struct {
	tmpl string
	at   time.Time
}

// fillLedger records the retries as serve does, in the order of time (of plan's
// retries, interleaved): the failure (its event claiming a cost and peaks of its
// own making), the fix approved, submitted and finished as the watcher measured it,
// and, for a fix that failed, the fix's own failure a minute later. It returns every
// outcome it put in a history.
func fillLedger(t *testing.T, store *ledger.Store, plan []plannedRetry) []recordedAt {
	t.Helper()
	ctx := context.Background()
	var history []recordedAt
	type step struct {
		at time.Time
		do func()
	}
	var steps []step
	for k := range plan {
		p := plan[k]
		ns := p.ns
		if ns == "" {
			ns = "data"
		}
		res := func(mem int64) failure.Resources { return failure.Resources{CPUMillis: 4000, MemoryBytes: mem} }
		ev := &failure.Event{ID: p.id, Time: p.received, Source: "watcher",
			Job: failure.Job{Namespace: ns, Name: p.id, Kind: failure.Batch, Template: p.tmpl, Attempt: 1, Resources: res(p.need * 9 / 10)},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, Message: "container was OOM-killed", LogTail: "Killed\n",
				DurationSeconds: 1200, Cost: forgedCost, Usage: failure.Usage{PeakMemoryBytes: forgedPeak}}}
		opt := failure.Option{Resources: res(p.mem), Changes: []string{"more memory"}, PSuccess: 0.9, PFix: 0.9}
		rec := &failure.Recommendation{EventID: p.id, Job: failure.JobRef{Namespace: ns, Name: p.id, Template: p.tmpl, Attempt: 1},
			Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true, Confidence: 0.95},
			Retry:          true, Options: []failure.Option{opt}, Chosen: 0}
		fix := p.id + "-af2"
		steps = append(steps, step{p.received, func() {
			_, err := store.Record(ctx, []ledger.Entry{{EventID: p.id, ReceivedAt: p.received, Event: ev, ChainID: "chain-" + p.id,
				Recommendation: rec, State: ledger.Approved, Actor: "policy", Reason: "automatic",
				Attempt: &ledger.Attempt{Number: 2, JobName: fix, Resources: opt.Resources, Option: &opt}}})
			if err != nil {
				t.Fatal(err)
			}
		}}, step{p.received.Add(time.Minute), func() {
			if err := store.Transition(ctx, p.id, ledger.Approved, ledger.Submitted, "dispatcher", "", p.received.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}})
		to, o := ledger.Failed, failure.Outcome{Resources: opt.Resources, DurationSeconds: 600, Cost: watcherCost,
			Usage: failure.Usage{PeakMemoryBytes: p.mem}}
		if p.succeeded() {
			to, o.DurationSeconds, o.Usage.PeakMemoryBytes = ledger.Succeeded, 3000, p.need
		}
		steps = append(steps, step{p.ended, func() {
			if err := store.Finish(ctx, p.id, to, o, "watcher", "", p.ended); err != nil {
				t.Fatal(err)
			}
		}})
		history = append(history, recordedAt{p.tmpl, p.received}, recordedAt{p.tmpl, p.ended})
		if p.succeeded() {
			continue
		}
		// The fix's own failure, in its chain at its number.
		fev := *ev
		fev.ID, fev.Job.Name, fev.Job.Attempt, fev.Job.Resources = p.id+"-fix-failed", fix, 2, opt.Resources
		at := p.ended.Add(time.Minute)
		frec := *rec
		frec.EventID, frec.Retry, frec.Options, frec.Chosen = fev.ID, false, nil, -1
		steps = append(steps, step{at, func() {
			if _, err := store.Record(ctx, []ledger.Entry{{EventID: fev.ID, ReceivedAt: at, Event: &fev, ChainID: "chain-" + p.id,
				Recommendation: &frec, State: ledger.PendingReview, Actor: "policy", Reason: "budget"}}); err != nil {
				t.Fatal(err)
			}
		}})
		history = append(history, recordedAt{p.tmpl, at})
	}
	slices.SortStableFunc(steps, func(a, b step) int { return a.at.Compare(b.at) })
	for _, st := range steps {
		st.do()
	}
	return history
}

// trainPlan is n retries, one an hour over two templates, each fix ending 150
// minutes after its failure (after the next failure of its template was received);
// the fixes of the last late ones all succeed, the others succeed when their
// memory, drawn around the need, covers it.
func trainPlan(n, late int) []plannedRetry {
	rng := rand.New(rand.NewPCG(8, 9))
	plan := make([]plannedRetry, n)
	for i := range plan {
		need := int64(8+rng.IntN(24)) << 30
		mem := int64(float64(need) * (0.75 + 0.6*rng.Float64()))
		if i >= n-late {
			mem = 2 * need
		}
		at := trainT0.Add(time.Duration(i) * time.Hour)
		plan[i] = plannedRetry{id: fmt.Sprintf("r%03d", i), tmpl: []string{"etl-a", "etl-b"}[i%2],
			received: at, ended: at.Add(150 * time.Minute), need: need, mem: mem}
	}
	return plan
}

func readDump(t *testing.T, path string) []models.Example {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []models.Example
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ex models.Example
		if err := json.Unmarshal(sc.Bytes(), &ex); err != nil {
			t.Fatalf("dumped example: %v", err)
		}
		out = append(out, ex)
	}
	return out
}

// TestTrainFromLedger: `train --from-ledger` trains on the ledger's retries, the
// earliest 80% by time, evaluates on the latest 20% (which differ: every one of
// their fixes succeeded), and says so; each retry's history holds exactly what its
// template had recorded before its failure was received; no cost or peak an event
// claimed reaches the examples; on both backends.
func TestTrainFromLedger(t *testing.T) {
	ledgertest.ForEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		store, err := ledger.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		plan := trainPlan(60, 12)
		recorded := fillLedger(t, store, plan)
		_ = store.Close()
		dir := t.TempDir()
		out, dump := filepath.Join(dir, "models.json"), filepath.Join(dir, "examples.jsonl")
		until := trainT0.Add(1000 * time.Hour).Format(time.RFC3339)
		args := append([]string{"train", "--from-ledger", "--until", until, "--history", "100", "--out", out, "--dump-examples", dump},
			ledgerArgs(dsn)...)
		code, stdout, stderr := runCmd(t, "", args...)
		if code != 0 {
			t.Fatalf("exit %d: %s\n%s", code, stderr, stdout)
		}
		hour := func(h int) string { return trainT0.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
		for _, want := range []string{
			"the ledger: 60 remediations whose attempt succeeded or failed, received before " + until + "\n",
			"trained on 48 retries received " + hour(0) + " to " + hour(47) + ",\n",
			"evaluated on the 12 received after them, " + hour(48) + " to " + hour(59) + "\n",
			"P(success), all retries: n=12 positives=12 ",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("the report does not say %q:\n%s", want, stdout)
			}
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		m, err := models.Load(data)
		if err != nil {
			t.Fatalf("the artifact does not load: %v", err)
		}
		if w := m.Evaluation.Window; w == nil || !w.TestFrom.Equal(trainT0.Add(48*time.Hour)) || m.Evaluation.TestExamples != 12 {
			t.Errorf("the artifact's evaluation: window %+v, %d test examples; want from hour 48, 12", w, m.Evaluation.TestExamples)
		}
		examples := readDump(t, dump)
		if len(examples) != len(plan) {
			t.Fatalf("%d examples dumped, want %d", len(examples), len(plan))
		}
		watcher := 0
		for i, ex := range examples {
			p := plan[i] // oldest first, as the plan is
			if ex.Event.ID != p.id || ex.Outcome.Succeeded != p.succeeded() || ex.Option.Resources.MemoryBytes != p.mem {
				t.Errorf("example %d: %s succeeded=%v mem=%d, want %s %v %d", i, ex.Event.ID, ex.Outcome.Succeeded,
					ex.Option.Resources.MemoryBytes, p.id, p.succeeded(), p.mem)
			}
			before := 0
			for _, r := range recorded {
				if r.tmpl == p.tmpl && r.at.Before(p.received) {
					before++
				}
			}
			if len(ex.History) != before {
				t.Errorf("%s: history of %d outcomes, want the %d its template had recorded before it", p.id, len(ex.History), before)
			}
			if ex.Event.Failure.Cost != 0 || ex.Event.Failure.Usage != (failure.Usage{}) {
				t.Errorf("%s: the event's claims are in its example: %+v", p.id, ex.Event.Failure)
			}
			if ex.Outcome.Cost != watcherCost {
				t.Errorf("%s: outcome cost %v, want the watcher's %v", p.id, ex.Outcome.Cost, watcherCost)
			}
			for _, h := range ex.History {
				if h.Cost == forgedCost || h.Usage.PeakMemoryBytes == forgedPeak {
					t.Errorf("%s: a claimed cost or peak is in its history: %+v", p.id, h)
				}
				if h.Cost == watcherCost {
					watcher++
				}
			}
		}
		if watcher == 0 {
			t.Error("no history holds what the watcher measured")
		}
	})
}

// TestTrainFromLedgerOptions: --max-examples keeps the latest, --with-sim adds
// simulated retries to training only.
func TestTrainFromLedgerOptions(t *testing.T) {
	dir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	fillLedger(t, store, trainPlan(60, 12))
	_ = store.Close()
	until := trainT0.Add(1000 * time.Hour).Format(time.RFC3339)
	base := []string{"train", "--from-ledger", "--data-dir", dir, "--until", until}
	hour := func(h int) string { return trainT0.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }

	code, stdout, stderr := runCmd(t, "", append(base, "--max-examples", "40")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"left out: 0 unreadable, 0 without the attempt's outcome, 20 older than the latest --max-examples 40\n",
		"trained on 32 retries received " + hour(20) + " to " + hour(51) + ",\n",
		"evaluated on the 8 received after them, " + hour(52) + " to " + hour(59) + "\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("with --max-examples 40, the report does not say %q:\n%s", want, stdout)
		}
	}

	code, stdout, stderr = runCmd(t, "", append(base, "--with-sim", "400", "--telemetry", "all")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "trained on 48 retries received "+hour(0)+" to "+hour(47)+" and ") ||
		!strings.Contains(stdout, " simulated,\nevaluated on the 12 received after them") ||
		!strings.Contains(stdout, "P(success), all retries: n=12 positives=12 ") {
		t.Errorf("with --with-sim, the report does not evaluate on the ledger's latest 12 alone:\n%s", stdout)
	}
}

// TestTrainFromLedgerNamespaceFlood: one tenant who fails a template's Jobs on
// purpose, many times and lately, cannot push every other tenant's retries out of
// --max-examples and have the models learn from its retries alone (whose outcomes
// its own code decides): --max-per-namespace keeps only its latest.
func TestTrainFromLedgerNamespaceFlood(t *testing.T) {
	dir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	plan := trainPlan(60, 12)
	// The flood: 200 failures of one template in another namespace, a minute apart,
	// after the rest; every fix "fails", whatever its memory.
	flood := trainT0.Add(61 * time.Hour)
	for i := range 200 {
		at := flood.Add(time.Duration(i) * time.Minute)
		plan = append(plan, plannedRetry{id: fmt.Sprintf("m%03d", i), ns: "mallory", tmpl: "poison",
			received: at, ended: at.Add(10 * time.Minute), need: 64 << 30, mem: 8 << 30})
	}
	fillLedger(t, store, plan)
	_ = store.Close()
	dump := filepath.Join(dir, "examples.jsonl")
	code, stdout, stderr := runCmd(t, "", "train", "--from-ledger", "--data-dir", dir, "--until", trainT0.Add(1000*time.Hour).Format(time.RFC3339),
		"--max-examples", "200", "--max-per-namespace", "60", "--dump-examples", dump)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, stdout)
	}
	count := map[string]int{}
	for _, ex := range readDump(t, dump) {
		count[ex.Event.Job.Namespace]++
	}
	if count["mallory"] != 60 || count["data"] != 60 {
		t.Errorf("examples by namespace %v, want mallory's latest 60 and data's 60", count)
	}
	if want := "left out: 140 retries past the latest --max-per-namespace 60 of their namespace (mallory)\n"; !strings.Contains(stdout, want) {
		t.Errorf("the report does not say %q:\n%s", want, stdout)
	}
}

// TestTrainFromLedgerRefuses: flags of --from-ledger without it, conflicting ones,
// values out of range, and a ledger with too little to split are refused by name.
func TestTrainFromLedgerRefuses(t *testing.T) {
	dir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	fillLedger(t, store, trainPlan(1, 0))
	_ = store.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--with-sim", "10"}, "--with-sim: only with --from-ledger"},
		{[]string{"--db", "postgres://x/y"}, "--db: only with --from-ledger"},
		{[]string{"--from-ledger", "--data-dir", dir, "--examples", "x.jsonl"}, "--examples: not with --from-ledger"},
		{[]string{"--from-ledger", "--data-dir", dir, "--test-share", "1"}, "--test-share: 1, want"},
		{[]string{"--from-ledger", "--data-dir", dir, "--max-examples", "1"}, "--max-examples: 1, want"},
		{[]string{"--from-ledger", "--data-dir", dir, "--max-per-namespace", "0"}, "--max-per-namespace: 0, want"},
		{[]string{"--max-per-namespace", "10"}, "--max-per-namespace: only with --from-ledger"},
		{[]string{"--from-ledger", "--data-dir", dir, "--until", "yesterday"}, `--until: "yesterday"`},
		{[]string{"--from-ledger", "--data-dir", filepath.Join(dir, "nothing")}, "no ledger at"},
		{[]string{"--from-ledger", "--data-dir", dir}, "1 retries, received at 1 different times: too few"},
	} {
		code, _, stderr := runCmd(t, "", append([]string{"train"}, c.args...)...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("train %v: exit %d, %q; want an error saying %q", c.args, code, stderr, c.want)
		}
	}
}

// TestSplitByTime: the latest share is held out, and failures received at the same
// instant are never split between training and evaluation.
func TestSplitByTime(t *testing.T) {
	at := func(hours ...int) []*ledgerRetry {
		var out []*ledgerRetry
		for _, h := range hours {
			out = append(out, &ledgerRetry{at: trainT0.Add(time.Duration(h) * time.Hour)})
		}
		return out
	}
	for _, c := range []struct {
		name  string
		items []*ledgerRetry
		share float64
		want  int
	}{
		{"ten", at(0, 1, 2, 3, 4, 5, 6, 7, 8, 9), 0.2, 8},
		{"a tie at the boundary goes to evaluation", at(0, 1, 2, 3, 4, 5, 6, 7, 7, 9), 0.2, 7},
		{"at least one held out", at(0, 1, 2), 0.01, 2},
		{"all at once", at(5, 5, 5, 5), 0.2, 0},
		{"one", at(0), 0.2, 0},
	} {
		if got := splitByTime(c.items, c.share); got != c.want {
			t.Errorf("%s: %d train, want %d", c.name, got, c.want)
		}
	}
}
