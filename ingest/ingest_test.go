package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/autofix/autofix/internal/testwait"
)

// testBrokers returns the brokers to test against: KAFKA_BROKERS when set (a real
// cluster), otherwise an embedded broker started for the test.
func testBrokers(t *testing.T) []string {
	t.Helper()
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ",")
	}
	b, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", SessionTimeoutMin: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return []string{b.Addr()}
}

// testSession is the tests' consumer-group session timeout. It is the broker's
// failure detector, a wall-clock threshold: a consumer not heard from for that long
// is evicted, and its uncommitted batch delivered again. Half a minute without one
// heartbeat (sent every 7.5 s) means a dead consumer, not a slow machine; 2 s could
// be a loaded one.
const testSession = 30 * time.Second

// names returns topic and group names unique to the test.
func names(t *testing.T) (topic, dlq, group string) {
	base := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return base, base + ".dlq", base + "-group"
}

func setup(t *testing.T, brokers []string, topic, dlq string, partitions int) {
	t.Helper()
	if err := EnsureTopics(testwait.Context(t), brokers, Security{}, Topic{Name: topic, Partitions: partitions, Retention: time.Hour},
		Topic{Name: dlq, Partitions: 1, Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
}

func publishN(t *testing.T, brokers []string, topic string, from, to int, value func(i int) string) {
	t.Helper()
	p, err := NewProducer(ProducerOptions{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	var msgs []Message
	for i := from; i < to; i++ {
		msgs = append(msgs, Message{Key: []byte("job-" + strconv.Itoa(i%17)), Value: []byte(value(i))})
	}
	if err := p.Publish(testwait.Context(t), msgs...); err != nil {
		t.Fatal(err)
	}
}

func plain(i int) string { return fmt.Sprintf(`{"n":%d}`, i) }

// recorder is a Handler that counts what it was handed and can be told to fail.
type recorder struct {
	mu       sync.Mutex
	seen     map[string]int
	batches  int
	failNext int // fail this many calls, then succeed
	// failFor makes every call fail for this long from the first call: an outage
	// of a length that does not depend on how long the test took to get there.
	failFor   time.Duration
	firstCall time.Time
	reject    func(m *Message) string // non-empty: dead-letter with this reason
	stopAt    int                     // after this many distinct values, call stop
	stop      func()
	onCall    func() // called at the start of each call
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}} }

func (r *recorder) Handle(ctx context.Context, batch []Message) ([]Rejection, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.onCall != nil {
		r.onCall()
	}
	if err := ctx.Err(); err != nil {
		return nil, err // as a ledger would: a dead context fails every call
	}
	if r.failNext > 0 {
		r.failNext--
		return nil, errors.New("ledger busy")
	}
	if r.firstCall.IsZero() {
		r.firstCall = time.Now()
	}
	if time.Since(r.firstCall) < r.failFor {
		return nil, errors.New("ledger down")
	}
	r.batches++
	var rej []Rejection
	for i := range batch {
		r.seen[string(batch[i].Value)]++
		if r.reject != nil {
			if why := r.reject(&batch[i]); why != "" {
				rej = append(rej, Rejection{Index: i, Reason: why})
			}
		}
	}
	if r.stop != nil && len(r.seen) >= r.stopAt {
		r.stop()
	}
	return rej, nil
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// count is how many times v was handed over.
func (r *recorder) count(v string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[v]
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.seen {
		n += c
	}
	return n
}

func consumer(t *testing.T, brokers []string, topic, dlq, group string) *Consumer {
	t.Helper()
	return consumerLogging(t, brokers, topic, dlq, group, nil)
}

// consumerLogging is consumer with its log, as text, written to logs.
func consumerLogging(t *testing.T, brokers []string, topic, dlq, group string, logs io.Writer) *Consumer {
	t.Helper()
	o := ConsumerOptions{Brokers: brokers, Topic: topic, GroupID: group, DeadLetterTopic: dlq,
		MaxBatch: 100, SessionTimeout: testSession, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if logs != nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	c, err := NewConsumer(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runUntil runs c with h until cond holds, then stops it. cond is checked after
// each batch c processes, for as long as the test may run (see testwait): how soon
// a consumer gets there depends on the machine, and a limit of the test's own would
// be a timing threshold.
func runUntil(t *testing.T, c *Consumer, h Handler, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	batches := watch(c)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	err := testwait.Until(testwait.Context(t), batches, cond)
	cancel()
	if rerr := <-done; rerr != nil {
		t.Fatalf("Run() = %v", rerr)
	}
	if err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

// watch returns a Signal that c notifies after each batch it processes. Call it
// before c runs.
func watch(c *Consumer) *testwait.Signal {
	s := &testwait.Signal{}
	c.processed = s.Notify
	return s
}

func TestAtLeastOnceAcrossRestart(t *testing.T) {
	brokers := testBrokers(t)
	topic, dlq, group := names(t)
	setup(t, brokers, topic, dlq, 3)
	const n = 3000
	publishN(t, brokers, topic, 0, n, plain)

	// The first consumer stops part-way: what it handled before stopping is committed.
	first := newRecorder()
	c1 := consumer(t, brokers, topic, dlq, group)
	ctx, cancel := context.WithCancel(context.Background())
	first.stopAt, first.stop = n/3, cancel
	if err := c1.Run(ctx, first); err != nil {
		t.Fatal(err)
	}
	handled := first.distinct()
	if handled < n/3 || handled >= n {
		t.Fatalf("first consumer handled %d of %d, want it stopped part-way", handled, n)
	}

	// The second resumes from the committed offsets: everything arrives, and nothing
	// the first one committed comes again.
	second := newRecorder()
	c2 := consumer(t, brokers, topic, dlq, group)
	runUntil(t, c2, second, fmt.Sprintf("all %d messages", n), func() bool { return first.distinct()+second.distinct() >= n })
	missing := 0
	for i := range n {
		if first.seen[plain(i)] == 0 && second.seen[plain(i)] == 0 {
			missing++
		}
	}
	again := 0
	for v := range second.seen {
		if first.seen[v] > 0 {
			again++
		}
	}
	if missing != 0 {
		t.Errorf("%d of %d messages never delivered", missing, n)
	}
	if again != 0 {
		t.Errorf("%d messages committed by the first consumer were delivered again", again)
	}
	t.Logf("first consumer %d, second %d", first.distinct(), second.distinct())
}

func TestDeadLetter(t *testing.T) {
	brokers := testBrokers(t)
	topic, dlq, group := names(t)
	setup(t, brokers, topic, dlq, 2)
	value := func(i int) string {
		if i%10 == 3 {
			return fmt.Sprintf("not json %d \x00\xff", i)
		}
		return plain(i)
	}
	publishN(t, brokers, topic, 0, 200, value)
	h := newRecorder()
	h.reject = func(m *Message) string {
		if strings.HasPrefix(string(m.Value), "not json") {
			return "decode: invalid JSON at byte 1"
		}
		return ""
	}
	c := consumer(t, brokers, topic, dlq, group)
	runUntil(t, c, h, "200 messages", func() bool { return h.distinct() >= 200 })
	if got := c.Stats().DeadLettered; got != 20 {
		t.Errorf("Stats().DeadLettered = %d, want 20", got)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: dlq, MaxWait: 500 * time.Millisecond})
	defer func() { _ = r.Close() }()
	want := map[string]bool{}
	for i := range 200 {
		if i%10 == 3 {
			want[value(i)] = true
		}
	}
	ctx := testwait.Context(t)
	for range 20 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading the dead-letter topic: %v", err)
		}
		got := fromKafka(&m)
		if !want[string(got.Value)] {
			t.Errorf("dead letter %q is not one of the malformed messages, byte for byte", got.Value)
		}
		delete(want, string(got.Value))
		if got.Headers[HeaderError] != "decode: invalid JSON at byte 1" || got.Headers[HeaderTopic] != topic {
			t.Errorf("dead letter headers = %v, want the reason and the source topic", got.Headers)
		}
		if _, err := strconv.Atoi(got.Headers[HeaderPartition]); err != nil {
			t.Errorf("partition header %q: %v", got.Headers[HeaderPartition], err)
		}
		if _, err := strconv.ParseInt(got.Headers[HeaderOffset], 10, 64); err != nil {
			t.Errorf("offset header %q: %v", got.Headers[HeaderOffset], err)
		}
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	brokers := testBrokers(t)
	topic, dlq, group := names(t)
	setup(t, brokers, topic, dlq, 1)
	publishN(t, brokers, topic, 0, 50, plain)
	h := newRecorder()
	h.failNext = 4
	c := consumer(t, brokers, topic, dlq, group)
	var stalled atomic.Bool // seen by a call that retries a failed one
	h.onCall = func() {
		if c.Stalled() {
			stalled.Store(true)
		}
	}
	runUntil(t, c, h, "50 messages", func() bool { return h.distinct() >= 50 })
	if st := c.Stats(); st.Retries != 4 {
		t.Errorf("Stats().Retries = %d, want 4", st.Retries)
	}
	if !stalled.Load() {
		t.Error("Stalled() never reported the failing handler")
	}
	if c.Stalled() {
		t.Error("Stalled() still true after the handler recovered")
	}
	if h.total() != 50 {
		t.Errorf("handled %d messages, want each of 50 once (a failed batch is handed again whole)", h.total())
	}
}

func TestBrokerRestart(t *testing.T) {
	if os.Getenv("KAFKA_BROKERS") != "" {
		t.Skip("restarts the embedded broker; an external cluster cannot be restarted from here")
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	start := func() *Broker {
		b, err := StartBroker(BrokerOptions{Addr: addr, DataDir: dir, SessionTimeoutMin: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	brokers := []string{addr}
	topic, dlq, group := names(t)
	setup(t, brokers, topic, dlq, 2)
	publishN(t, brokers, topic, 0, 500, plain)

	h := newRecorder()
	var logs syncBuffer
	c := consumerLogging(t, brokers, topic, dlq, group, &logs)
	batches := watch(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}()
	wait := func(n int) {
		t.Helper()
		testwait.For(t, fmt.Sprintf("%d distinct messages", n), batches, func() bool { return h.distinct() >= n })
	}
	wait(500)
	seen := logs.Len()
	b.Close() // mid-stream: the consumer keeps running and reconnects
	if err := Reachable(context.Background(), brokers, Security{}, 500*time.Millisecond); err == nil {
		t.Fatal("Reachable() = nil with the broker down")
	}
	// The broker comes back once the consumer has found it gone (its reader logs the
	// failed fetch): an outage the consumer lived through, however long that took.
	testwait.For(t, "the consumer to report the broker gone", &logs.changed, func() bool {
		return strings.Contains(logs.From(seen), "level=WARN")
	})
	b = start()
	defer b.Close()
	publishN(t, brokers, topic, 500, 1000, plain)
	wait(1000)
	for i := range 1000 {
		if h.count(plain(i)) == 0 { // the consumer still runs: a redelivery may come
			t.Fatalf("message %d lost across the broker restart", i)
		}
	}
}

// TestTopicCreatedAfterStart: a consumer started before its topic exists waits for it
// and then consumes (a kafka-go reader that joins first would be assigned nothing).
func TestTopicCreatedAfterStart(t *testing.T) {
	brokers := testBrokers(t)
	topic, dlq, group := names(t)
	h := newRecorder()
	var logs syncBuffer
	c := consumerLogging(t, brokers, topic, dlq, group, &logs)
	batches := watch(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}()
	// The topic is created once the consumer has looked for it and found it missing.
	testwait.For(t, "the consumer to wait for its topic", &logs.changed, func() bool {
		return strings.Contains(logs.String(), "waiting for the topic")
	})
	setup(t, brokers, topic, dlq, 3)
	publishN(t, brokers, topic, 0, 100, plain)
	testwait.For(t, "the 100 messages published after the consumer started", batches, func() bool { return h.distinct() >= 100 })
	if h.distinct() != 100 {
		t.Fatalf("consumed %d distinct messages, want the 100 published", h.distinct())
	}
}

// TestOutageLongerThanATry: the handler fails for several times the per-try timeout;
// once it recovers, the consumer goes on (each try has a deadline of its own). The
// outage is timed from the handler's first call, so it always outlasts a try, and a
// shared deadline would fail every call after it for good.
func TestOutageLongerThanATry(t *testing.T) {
	brokers := testBrokers(t)
	topic, dlq, group := names(t)
	setup(t, brokers, topic, dlq, 1)
	publishN(t, brokers, topic, 0, 20, plain)
	const try = 300 * time.Millisecond
	h := newRecorder()
	h.failFor = 5 * try
	c, err := NewConsumer(ConsumerOptions{Brokers: brokers, Topic: topic, GroupID: group, DeadLetterTopic: dlq,
		SessionTimeout: testSession, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		AttemptTimeout: try})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, c, h, "the 20 messages after the outage", func() bool { return h.distinct() >= 20 })
}
