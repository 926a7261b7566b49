package engine

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/examples"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/internal/testwait"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/ledger/ledgertest"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/recommender"
	"github.com/autofix/autofix/rules"
)

// sharedRecommender returns the recommender the tests share. Building one compiles
// every rule, which takes seconds under the race detector (6-10 s each on a loaded
// 2-core machine): once per test, that alone took the package towards go test's
// 10-minute limit. A Recommender keeps nothing between calls and is safe for
// concurrent use, as serve uses it.
func sharedRecommender(t testing.TB) *recommender.Recommender {
	t.Helper()
	r, err := buildRecommender()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var buildRecommender = sync.OnceValues(func() (*recommender.Recommender, error) {
	rs, err := classifier.Load(rules.FS)
	if err != nil {
		return nil, err
	}
	m, err := models.Default()
	if err != nil {
		return nil, err
	}
	return recommender.New(classifier.New(rs, classifier.Options{MinConfidence: 0.5}), m,
		recommender.Options{Catalogue: failure.DefaultCatalogue(), MaxMemoryBytes: 1 << 40, MaxCPUMillis: 96000, MaxGPUs: 8}), nil
})

// forEachLedger runs fn with an empty ledger of every backend.
func forEachLedger(t *testing.T, fn func(t *testing.T, s *ledger.Store)) {
	ledgertest.ForEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		s, err := ledger.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		fn(t, s)
	})
}

// signalling is a ledger that signals each write that may change what a test
// waits for: a record from the intake, a move by the dispatcher.
type signalling struct {
	*ledger.Store
	changed *testwait.Signal
}

func (l signalling) Record(ctx context.Context, entries []ledger.Entry) ([]bool, error) {
	defer l.changed.Notify()
	return l.Store.Record(ctx, entries)
}

func (l signalling) Transition(ctx context.Context, id string, from, to ledger.State, actor, detail string, at time.Time) error {
	defer l.changed.Notify()
	return l.Store.Transition(ctx, id, from, to, actor, detail, at)
}

// forEachLedgerInBubble runs fn in a synctest bubble with an empty ledger of every
// backend, opened and closed inside the bubble so that its connection pools belong
// to it: the timers fn and the code under test start run on the bubble's clock.
func forEachLedgerInBubble(t *testing.T, fn func(t *testing.T, s *ledger.Store)) {
	ledgertest.ForEachDSN(t, func(tb testing.TB, dsn string) {
		synctest.Test(tb.(*testing.T), func(t *testing.T) {
			s, err := ledger.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			fn(t, s)
		})
	})
}

func exampleLines(t *testing.T) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(examples.Events))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	if len(out) < 10 {
		t.Fatalf("only %d sample events", len(out))
	}
	return out
}

// TestLoopOverKafka runs the loop as serve does — broker over TCP, consumer group,
// Intake, real ledger, Dispatcher — on the sample events plus malformed messages and
// duplicates, and checks what a user would: every valid event recorded once with its
// decision, every malformed one rejected with the field named and on the DLQ, every
// approved fix submitted exactly once.
func TestLoopOverKafka(t *testing.T) {
	forEachLedger(t, func(t *testing.T, store *ledger.Store) {
		b, err := ingest.StartBroker(ingest.BrokerOptions{Addr: "127.0.0.1:0", SessionTimeoutMin: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		brokers := []string{b.Addr()}
		// Everything below waits as long as the test may run: how long the loop takes
		// depends on the machine, and a wait of its own would be a timing threshold.
		ctx := testwait.Context(t)
		if err := ingest.EnsureTopics(ctx, brokers, ingest.Security{}, ingest.Topic{Name: "failures", Partitions: 3},
			ingest.Topic{Name: "failures.dlq", Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		valid := exampleLines(t)
		malformed := [][]byte{
			[]byte(`{"id": "broken"`),
			[]byte(`{"id":"bad-qty","job":{"name":"a","resources":{"memory":"16GB"}},"failure":{"reason":"OOMKilled"}}`),
			[]byte(`{"job":{"name":"a"},"failure":{"reason":"OOMKilled"}}`),
		}
		nul := []byte(`{"id":"nul-name","job":{"name":"a\u0000b","resources":{"memory":"1Gi"}},"failure":{"reason":"OOMKilled","exitCode":137}}`)
		var msgs []ingest.Message
		for _, v := range append(append(append([][]byte{}, valid...), malformed...), nul) {
			msgs = append(msgs, ingest.Message{Value: v})
		}
		for _, v := range valid[:3] { // a producer retry: the same events again
			msgs = append(msgs, ingest.Message{Value: v})
		}
		p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: brokers, Topic: "failures"})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		_ = p.Close()

		pol := policy.Default()
		rem, err := OpenRecording(filepath.Join(t.TempDir(), "submissions.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rem.Close() }()
		c, err := ingest.NewConsumer(ingest.ConsumerOptions{Brokers: brokers, Topic: "failures", GroupID: "autofix",
			// A session long enough that no slow machine gets the consumer evicted
			// (and a batch dead-lettered twice): see ingest's testSession.
			DeadLetterTopic: "failures.dlq", SessionTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 2)
		changed := &testwait.Signal{}
		watched := signalling{Store: store, changed: changed}
		in := &Intake{Ledger: watched, Recommender: sharedRecommender(t), Policy: &pol}
		go func() { done <- c.Run(runCtx, in) }()
		// The dispatcher's clock runs ten minutes ahead, past the backoff that retries
		// of transient failures wait (TestDispatcherWaitsForTheBackoff covers that).
		d := &Dispatcher{Ledger: watched, Remediator: rem, Limiter: policy.NewLimiter(6000, 100), Interval: 20 * time.Millisecond,
			Now: func() time.Time { return time.Now().Add(10 * time.Minute) }}
		go func() { done <- d.Run(runCtx) }()

		want := len(valid) + len(malformed) + 1
		var all []ledger.Remediation
		var lastErr error
		testwait.For(t, fmt.Sprintf("%d events recorded and none approved but not submitted", want), changed, func() bool {
			all = all[:0]
			if lastErr = store.Each(ctx, func(r ledger.Remediation) error { all = append(all, r); return nil }); lastErr != nil {
				return true
			}
			counts, err := store.Counts(ctx)
			if lastErr = err; err != nil {
				return true
			}
			return len(all) >= want && counts[ledger.Approved] == 0
		})
		if lastErr != nil {
			t.Fatal(lastErr)
		}
		stop()
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		// Read again now that nothing moves: the loop's two reads are not one snapshot
		// (a remediation read as approved may have been submitted before Counts).
		all = all[:0]
		if err := store.Each(ctx, func(r ledger.Remediation) error { all = append(all, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(all) != want {
			t.Fatalf("ledger holds %d events, want %d (each valid event once, each malformed message once)", len(all), want)
		}
		byID := map[string]ledger.Remediation{}
		rejectedErrors := []string{}
		for _, r := range all {
			byID[r.EventID] = r
			if strings.HasPrefix(r.EventID, "kafka:") {
				rejectedErrors = append(rejectedErrors, r.Error)
				if r.State != ledger.Rejected {
					t.Errorf("malformed message %s is %s, want rejected", r.EventID, r.State)
				}
			}
		}
		joined := strings.Join(rejectedErrors, "\n")
		for _, field := range []string{"job.resources.memory", "id: required", "not valid JSON"} {
			if !strings.Contains(joined, field) {
				t.Errorf("rejections %q do not name %q", joined, field)
			}
		}
		oom := byID["sample-oomkilled"]
		if oom.State != ledger.Submitted || len(oom.Attempts) != 1 {
			t.Fatalf("sample-oomkilled: state %s, attempts %+v; want submitted with one attempt", oom.State, oom.Attempts)
		}
		if a := oom.Attempts[0]; a.Number != 2 || a.Resources.MemoryBytes <= 16<<30 || a.JobName != "resnet50-train-7-af2" {
			t.Errorf("sample-oomkilled attempt = %+v, want attempt 2 of resnet50-train-7 with more than 16Gi", a)
		}
		if r := byID["sample-device-assert"]; r.State != ledger.Rejected || r.Category != failure.DataError {
			t.Errorf("sample-device-assert: %s %s, want rejected data_error", r.State, r.Category)
		}
		if !strings.Contains(joined, "job.name: contains a control character") {
			t.Errorf("the event with a NUL in its job name: rejections %q do not say why", joined)
		}
		subs, err := ReadSubmissions(filepath.Join(filepath.Dir(rem.f.Name()), "submissions.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]int{}
		for _, s := range subs {
			names[s.JobName]++
		}
		submitted := 0
		for _, r := range all {
			if r.State == ledger.Submitted {
				submitted++
			}
		}
		if len(subs) != submitted || len(names) != len(subs) {
			t.Errorf("%d submissions (%d distinct jobs) for %d submitted remediations; want one each", len(subs), len(names), submitted)
		}
		if st := c.Stats(); st.DeadLettered != int64(len(malformed)+1) {
			t.Errorf("dead-lettered %d, want %d (the malformed messages and the NUL name)", st.DeadLettered, len(malformed)+1)
		}
		got, err := store.Get(ctx, "sample-oomkilled")
		if err != nil {
			t.Fatal(err)
		}
		decides := 0
		for _, a := range got.Audit {
			if a.Action == "decide" {
				decides++
			}
		}
		if decides != 1 {
			t.Errorf("sample-oomkilled was decided %d times, want once despite the duplicate delivery", decides)
		}
	})
}
