package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/autofix/autofix/internal/testwait"
)

// failRecorder is a recorder that also hears of messages that could not be
// dead-lettered.
type failRecorder struct {
	*recorder
	mu     sync.Mutex
	failed []string // positions
}

func (f *failRecorder) DeadLetterFailed(_ context.Context, m *Message, reason string, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, m.Position()+": "+reason+": "+err.Error())
	return nil
}

func (f *failRecorder) failures() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.failed...)
}

// publishGzip sends values compressed, as a producer with compression.type=gzip
// does: the broker's limit applies to the compressed batch, so a value far over it
// gets through.
func publishGzip(t *testing.T, brokers []string, topic string, values ...[]byte) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Compression: compress.Gzip, BatchBytes: 8 << 20,
		BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer func() { _ = w.Close() }()
	ctx := testwait.Context(t)
	for _, v := range values {
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: v}); err != nil {
			t.Fatal(err)
		}
	}
}

// readDLQ reads n records of the dead-letter topic.
func readDLQ(t *testing.T, brokers []string, dlq string, n int) []Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: dlq, MaxWait: 500 * time.Millisecond, MaxBytes: 8 << 20})
	defer func() { _ = r.Close() }()
	ctx := testwait.Context(t)
	var out []Message
	for range n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading the dead-letter topic: %v", err)
		}
		out = append(out, fromKafka(&m))
	}
	return out
}

// TestOversizedDeadLetter: a message the handler rejects whose copy is over the
// broker's limit — a 3 MiB value that came in gzip-compressed, and one just under
// the limit that overflows once the reason headers are added — is dead-lettered as a
// bounded copy, and the messages after it are handled and committed. Before, the
// dead-letter write failed forever and nothing after it was committed.
func TestOversizedDeadLetter(t *testing.T) {
	brokers := testBrokers(t)
	topic, dlq, group := names(t)
	setup(t, brokers, topic, dlq, 1)
	big := bytes.Repeat([]byte("x"), 3<<20)
	near := make([]byte, (1<<20)-200) // random: incompressible, just under the limit as sent
	if _, err := rand.Read(near); err != nil {
		t.Fatal(err)
	}
	nearHex := []byte(hex.EncodeToString(near[:len(near)/2]))
	publishGzip(t, brokers, topic, big)
	publishN(t, brokers, topic, 0, 1, func(int) string { return string(nearHex) })
	publishN(t, brokers, topic, 1, 3, plain)

	h := &failRecorder{recorder: newRecorder()}
	h.reject = func(m *Message) string {
		if len(m.Value) > 1000 {
			return "payload: " + strings.Repeat("too large; ", 50)
		}
		return ""
	}
	c := consumer(t, brokers, topic, dlq, group)
	runUntil(t, c, h, "4 messages handled and committed", func() bool {
		return c.Stats().Commits > 0 && h.distinct() >= 4 && c.Stats().Lag == 0
	})
	if st := c.Stats(); st.DeadLettered != 2 || st.DeadLetterFailed != 0 {
		t.Errorf("stats = %+v, want 2 dead-lettered, none failed", st)
	}
	for _, m := range readDLQ(t, brokers, dlq, 2) {
		if len(m.Value) != MaxDeadLetterValue || !strings.HasPrefix(m.Headers[HeaderTruncated], "value=") {
			t.Errorf("dead letter of %d bytes, headers %v: want %d bytes and a truncation marker", len(m.Value), m.Headers, MaxDeadLetterValue)
		}
		if m.Headers[HeaderError] == "" || m.Headers[HeaderTopic] != topic || m.Headers[HeaderOffset] == "" || string(m.Key) != "k" && !strings.HasPrefix(string(m.Key), "job-") {
			t.Errorf("dead letter headers %v, key %q: want the reason, the source and the key", m.Headers, m.Key)
		}
	}
	// A second consumer of the group starts after the committed messages.
	h2 := newRecorder()
	publishN(t, brokers, topic, 3, 4, plain)
	c2 := consumer(t, brokers, topic, dlq, group)
	runUntil(t, c2, h2, "the new message", func() bool { return h2.distinct() >= 1 })
	if h2.total() != 1 {
		t.Errorf("a restarted consumer was handed %d messages, want only the new one (the rest committed)", h2.total())
	}
}

// TestDeadLetterRefused: when the dead-letter topic refuses even the smallest copy
// (its max.message.bytes is tiny), the message is given up on after the bounded
// tries — the handler hears of it — and committed; the consumer goes on.
func TestDeadLetterRefused(t *testing.T) {
	brokers := testBrokers(t)
	topic, dlq, group := names(t)
	if err := EnsureTopics(testwait.Context(t), brokers, Security{}, Topic{Name: topic, Partitions: 1}, Topic{Name: dlq, Partitions: 1, MaxMessageBytes: 64}); err != nil {
		t.Fatal(err)
	}
	publishN(t, brokers, topic, 0, 5, plain)
	h := &failRecorder{recorder: newRecorder()}
	h.reject = func(m *Message) string {
		if string(m.Value) == plain(1) {
			return "decode: poison"
		}
		return ""
	}
	c := consumer(t, brokers, topic, dlq, group)
	runUntil(t, c, h, "5 messages handled, the poison given up on", func() bool {
		return h.distinct() >= 5 && c.Stats().Commits > 0 && len(h.failures()) > 0
	})
	if f := h.failures(); len(f) != 1 || !strings.Contains(f[0], "decode: poison") {
		t.Errorf("dead-letter failures = %q, want the one poison message", f)
	}
	if st := c.Stats(); st.DeadLetterFailed != 1 || st.DeadLettered != 0 {
		t.Errorf("stats = %+v, want one failed dead-letter", st)
	}
}

func TestTransientClassification(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{kafka.MessageSizeTooLarge, false},
		{kafka.MessageTooLargeError{}, false},
		{kafka.RecordListTooLarge, false},
		{kafka.LeaderNotAvailable, true},
		{kafka.NotEnoughReplicas, true},
		{context.DeadlineExceeded, true},
		{errors.New("dial tcp 127.0.0.1:9: connect: connection refused"), true},
		{errors.New("something else"), false},
	} {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestDeadLetterPatienceIsPerBatch: with the broker unreachable, a batch of
// rejected messages is given up on after one patience, not one per message. Before,
// each message (and its headers-only copy) waited a patience of its own: 19 times
// the patience for 10 messages. The clock is synctest's, so the figure is exact.
func TestDeadLetterPatienceIsPerBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const patience = 5 * time.Minute
		calls := 0
		c := &Consumer{o: ConsumerOptions{DeadLetterPatience: patience}, deadLetterTo: func(context.Context, ...Message) error {
			calls++
			return kafka.LeaderNotAvailable // transient: retried while the patience lasts
		}}
		c.o.setDefaults()
		h := &failRecorder{recorder: newRecorder()}
		var in []Message
		var rej []Rejection
		for i := range 10 {
			in = append(in, Message{Topic: "t", Offset: int64(i), Value: []byte("x")})
			rej = append(rej, Rejection{Index: i, Reason: "bad"})
		}
		start := time.Now()
		if err := c.deadLetterAll(context.Background(), context.Background(), h, in, rej); err != nil {
			t.Fatal(err)
		}
		if len(h.failures()) != 10 {
			t.Errorf("%d messages given up on, want 10", len(h.failures()))
		}
		if d := time.Since(start); d > patience {
			t.Errorf("dead-lettering 10 messages to an unreachable broker took %s (%d tries); want one patience, %s", d, calls, patience)
		}
		if c.Stalled() {
			t.Error("the consumer still reports itself stalled after giving up")
		}
	})
}
