package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

func TestOpenTwiceMigratesOnce(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		ctx := context.Background()
		// Replicas starting at once on an empty database (one that finds the file
		// locked for longer than busy_timeout is restarted).
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				errs[i] = retryBusy(t, func() error {
					s, err := Open(ctx, dsn)
					if err == nil {
						err = s.Close()
					}
					return err
				})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent Open #%d = %v", i, err)
			}
		}
		s := openTest(t, dsn)
		mustRecord(t, s, entry("e1", PendingReview, entryOpt{}))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openTest(t, dsn)
		ms, err := migrations()
		if err != nil {
			t.Fatal(err)
		}
		var n, max int
		if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) || max != ms[len(ms)-1].version {
			t.Errorf("schema_migrations has %d rows up to %d, want %d up to %d", n, max, len(ms), ms[len(ms)-1].version)
		}
		if m := mustGet(t, s, "e1"); m.State != PendingReview {
			t.Errorf("after reopening, e1 is %s, want %s", m.State, PendingReview)
		}
	})
}

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, "sqlite:"+dir+"/x.db")
	if got := s.Backend(); got != "sqlite" {
		t.Errorf("Backend() = %q, want sqlite", got)
	}
	// Every connection of both pools has the pragmas.
	for name, db := range map[string]querier{"writer": s.w, "reader": s.r} {
		var mode string
		var syncMode, fk, busy int
		row := db.QueryRowContext(ctx, "SELECT * FROM pragma_journal_mode, pragma_synchronous, pragma_foreign_keys, pragma_busy_timeout")
		if err := row.Scan(&mode, &syncMode, &fk, &busy); err != nil {
			t.Fatalf("%s pragmas: %v", name, err)
		}
		if mode != "wal" || syncMode != 2 || fk != 1 || busy != 5000 {
			t.Errorf("%s: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d, want wal 2 1 5000", name, mode, syncMode, fk, busy)
		}
	}
	if _, err := Open(ctx, dir+"/missing/x.db"); err == nil {
		t.Error("Open in a missing directory succeeded, want an error")
	}
}

func TestRecordDedup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		a, b, c := entry("a", Approved, entryOpt{}), entry("b", PendingReview, entryOpt{}), entry("c", Rejected, entryOpt{})
		if got, want := mustRecord(t, s, a, b, a), []bool{true, true, false}; !reflect.DeepEqual(got, want) {
			t.Errorf("Record(a, b, a) fresh = %v, want %v", got, want)
		}
		if got, want := mustRecord(t, s, b, c), []bool{false, true}; !reflect.DeepEqual(got, want) {
			t.Errorf("Record(b, c) fresh = %v, want %v", got, want)
		}
		counts, err := s.Counts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if counts[Approved] != 1 || counts[PendingReview] != 1 || counts[Rejected] != 1 {
			t.Errorf("Counts() = %v, want one approved, one pending_review, one rejected", counts)
		}
		m := mustGet(t, s, "a")
		if len(m.Audit) != 4 || len(m.Attempts) != 1 {
			t.Errorf("a has %d audit rows and %d attempts, want 4 and 1", len(m.Audit), len(m.Attempts))
		}
		seen, err := s.SeenErrors(context.Background(), []string{"a", "c", "zz"})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"a": "", "c": ""}; !reflect.DeepEqual(seen, want) {
			t.Errorf("SeenErrors(a, c, zz) = %v, want %v", seen, want)
		}
	})
}

func TestRecordFields(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		e := entry("ev-1", Approved, entryOpt{ns: "ml", tmpl: "bert", chain: "ch-1", attempt: 2})
		mustRecord(t, s, e)
		m := mustGet(t, s, "ev-1")
		want := Remediation{
			EventID: "ev-1", ChainID: "ch-1", Namespace: "ml", JobName: "bert-2", Template: "bert", Kind: "training",
			Attempt: 2, State: Approved, Category: failure.OOMMemory, Confidence: 0.93, Reason: e.Reason,
			Source: e.Source, ReceivedAt: t0, UpdatedAt: t0, Event: e.Event, Recommendation: e.Recommendation,
			Attempts: []Attempt{{ChainID: "ch-1", Number: 3, EventID: "ev-1", JobName: e.Attempt.JobName, Namespace: "ml",
				Resources: e.Attempt.Resources, Params: e.Attempt.Params}},
			Audit: []AuditEntry{
				{At: t0, Actor: "autofix", Action: "receive", To: Received, Detail: "from failures/2@1000"},
				{At: t0, Actor: "autofix", Action: "classify", From: Received, To: Classified, Detail: "oom_memory (confidence 0.93)"},
				{At: t0, Actor: "autofix", Action: "recommend", From: Classified, To: Recommended, Detail: "retry: memory 32Gi -> 48Gi"},
				{At: t0, Actor: "policy", Action: "decide", From: Recommended, To: Approved, Detail: e.Reason},
			},
		}
		if len(m.Attempts) == 1 && len(m.Attempts[0].Token) != 32 {
			t.Errorf("attempt token %q, want 32 hex digits", m.Attempts[0].Token)
		}
		for i := range m.Attempts {
			m.Attempts[i].Token = ""
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("Get(ev-1) =\n%+v\nwant\n%+v", m, want)
		}
		h, err := s.History(context.Background(), []string{"ml/bert"}, 10)
		if err != nil {
			t.Fatal(err)
		}
		wantH := []failure.Outcome{{Template: "bert", Attempt: 2, Resources: e.Event.Job.Resources, Params: e.Event.Job.Params,
			Category: failure.OOMMemory, DurationSeconds: 5400, Usage: e.Event.Failure.Usage, Node: "gpu-node-7"}}
		if !reflect.DeepEqual(h["ml/bert"], wantH) {
			t.Errorf("History(ml/bert) = %+v, want %+v", h["ml/bert"], wantH)
		}
	})
}

func TestRecordRejected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		at := t0.Add(time.Minute)
		if fresh := mustRecord(t, s, rejected("failures/0@7", at)); !fresh[0] {
			t.Fatal("rejected message not fresh")
		}
		m := mustGet(t, s, "failures/0@7")
		if m.State != Rejected || m.Event != nil || m.Recommendation != nil || m.Error != "job.name: required" || !m.ReceivedAt.Equal(at) {
			t.Errorf("Get = %+v, want a rejected message without event", m)
		}
		want := []AuditEntry{{At: at, Actor: "ingest", Action: "reject", To: Rejected, Detail: "job.name: required"}}
		if !reflect.DeepEqual(m.Audit, want) {
			t.Errorf("audit = %+v, want %+v", m.Audit, want)
		}
		h, err := s.History(context.Background(), []string{"/"}, 0)
		if err != nil || len(h) != 0 {
			t.Errorf("History after a rejected message = %v, %v; want none", h, err)
		}
	})
}

func TestRecordInvalid(t *testing.T) {
	noChain := entry("x", PendingReview, entryOpt{})
	noChain.ChainID = ""
	noAttempt := entry("x", Approved, entryOpt{})
	noAttempt.Attempt = nil
	badAttempt := entry("x", Approved, entryOpt{})
	badAttempt.Attempt.JobName = ""
	submitted := entry("x", PendingReview, entryOpt{})
	submitted.State = Submitted
	msg := rejected("x", t0)
	msg.State = Approved
	tests := map[string]Entry{
		"no id": {State: Rejected}, "no chain": noChain, "approved without attempt": noAttempt,
		"attempt without job name": badAttempt, "state submitted": submitted, "approved message": msg,
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		for name, e := range tests {
			if _, err := s.Record(context.Background(), []Entry{entry("ok", PendingReview, entryOpt{}), e}); err == nil {
				t.Errorf("Record(%s) = nil error, want one", name)
			}
		}
		if seen, _ := s.SeenErrors(context.Background(), []string{"ok"}); len(seen) > 0 {
			t.Error("a batch with an invalid entry was partly written")
		}
	})
}

func TestRecordAttemptTaken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		a := entry("a", Approved, entryOpt{chain: "ch"})
		b := entry("b", Approved, entryOpt{chain: "ch"}) // the same attempt 2 of chain ch
		mustRecord(t, s, a, b)
		if m := mustGet(t, s, "a"); m.State != Approved {
			t.Errorf("a is %s, want approved", m.State)
		}
		m := mustGet(t, s, "b")
		if m.State != Abandoned || len(m.Audit) != 5 || m.Audit[4].Actor != "ledger" || m.Audit[4].To != Abandoned {
			t.Errorf("b is %s with audit %+v, want abandoned by the ledger", m.State, m.Audit)
		}
		if len(m.Attempts) != 1 || m.Attempts[0].EventID != "a" {
			t.Errorf("chain ch attempts = %+v, want only a's", m.Attempts)
		}
	})
}

// TestConcurrentRecord has replicas (Stores of their own) record the same ids at once,
// in different orders and batches: each id must be fresh exactly once.
func TestConcurrentRecord(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		const replicas, ids, batch = 4, 300, 40
		var entries []Entry
		for i := range ids {
			st := []State{Approved, PendingReview, Rejected}[i%3]
			entries = append(entries, entry(fmt.Sprintf("ev-%03d", i), st, entryOpt{tmpl: fmt.Sprintf("t%d", i%7),
				at: t0.Add(time.Duration(i) * time.Second)}))
		}
		stores := make([]*Store, replicas)
		for i := range stores {
			stores[i] = openTest(t, dsn)
		}
		var (
			mu    sync.Mutex
			fresh = map[string]int{}
			wg    sync.WaitGroup
		)
		for r := range replicas {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			mine := append([]Entry(nil), entries...)
			rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
			wg.Go(func() {
				for start := 0; start < len(mine); start += batch {
					part := mine[start:min(start+batch, len(mine))]
					var f []bool
					err := retryBusy(t, func() (err error) {
						f, err = stores[r].Record(context.Background(), part)
						return err
					})
					if err != nil {
						t.Errorf("replica %d: Record = %v", r, err)
						return
					}
					mu.Lock()
					for i, ok := range f {
						if ok {
							fresh[part[i].EventID]++
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, e := range entries {
			if fresh[e.EventID] != 1 {
				t.Errorf("%s fresh %d times, want 1", e.EventID, fresh[e.EventID])
			}
		}
		h, err := stores[0].History(context.Background(), []string{"team-a/t0"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(h["team-a/t0"]), (ids+6)/7; got != want {
			t.Errorf("History(team-a/t0) has %d outcomes, want %d", got, want)
		}
	})
}

// TestSameJobNameInTwoNamespaces: Jobs of the same name in two namespaces are two
// Jobs; their fixes (attempt Jobs of the same name) do not collide. Before, attempt
// job names were unique across the whole ledger and the second fix was abandoned.
func TestSameJobNameInTwoNamespaces(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		a := entry("a", Approved, entryOpt{ns: "team-a", chain: "team-a/train"})
		b := entry("b", Approved, entryOpt{ns: "team-b", chain: "team-b/train"})
		a.Attempt.JobName, b.Attempt.JobName = "train-af2", "train-af2"
		mustRecord(t, s, a, b)
		for _, id := range []string{"a", "b"} {
			if m := mustGet(t, s, id); m.State != Approved {
				t.Errorf("%s is %s, want approved (audit %+v)", id, m.State, m.Audit)
			}
		}
		got, err := s.AttemptsByJob(context.Background(), []JobKey{{"team-a", "train-af2"}, {"team-b", "train-af2"}, {"team-c", "train-af2"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[JobKey{"team-a", "train-af2"}].ChainID != "team-a/train" || got[JobKey{"team-b", "train-af2"}].EventID != "b" {
			t.Errorf("AttemptsByJob = %+v, want team-a's and team-b's attempts, each its own", got)
		}
		// In one namespace the name is still taken once.
		c := entry("c", Approved, entryOpt{ns: "team-a", chain: "team-a/other"})
		c.Attempt.JobName = "train-af2"
		mustRecord(t, s, c)
		if m := mustGet(t, s, "c"); m.State != Abandoned {
			t.Errorf("c is %s, want abandoned: its job name is taken in team-a", m.State)
		}
	})
}

// TestAttemptsByJobManyKeys: a full batch of lookups (and more, with duplicates)
// works. Before, an OR of 999 pairs exceeded SQLite's expression depth, and intake
// failed every batch of a thousand events for good.
func TestAttemptsByJobManyKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		a := entry("a", Approved, entryOpt{ns: "team-a", chain: "team-a/train"})
		a.Attempt.JobName = "job-1500"
		mustRecord(t, s, a)
		var keys []JobKey
		for i := range 3000 {
			keys = append(keys, JobKey{Namespace: []string{"team-a", "team-b"}[i%2], Name: fmt.Sprintf("job-%d", i%2000)})
		}
		got, err := s.AttemptsByJob(context.Background(), keys)
		if err != nil {
			t.Fatalf("AttemptsByJob(3000 keys) = %v", err)
		}
		if len(got) != 1 || got[JobKey{"team-a", "job-1500"}].EventID != "a" {
			t.Errorf("AttemptsByJob = %v, want a's attempt only", got)
		}
	})
}
