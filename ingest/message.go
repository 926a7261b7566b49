package ingest

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Message is one Kafka record, as consumed or to be produced.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	// Value is the record's payload, byte for byte as produced.
	Value []byte
	Time  time.Time
	// Headers are the record's headers (the dead-letter topic's reasons travel here).
	Headers map[string]string
}

// Position names where a message sits in its topic, e.g. "autofix.failures/3/1042".
func (m *Message) Position() string {
	return m.Topic + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10)
}

// Rejection asks for one message of a batch to go to the dead-letter topic.
type Rejection struct {
	// Index is the message's index in the batch.
	Index int
	// Reason says why, naming the field when a field was at fault.
	Reason string
}

// Handler processes the batches a Consumer fetches.
type Handler interface {
	// Handle makes the outcome of every message in batch durable and returns the
	// messages to dead-letter. Messages of one partition come in offset order. An error
	// means nothing of the batch may be committed: the Consumer backs off and hands the
	// same batch again, so Handle must be idempotent.
	Handle(ctx context.Context, batch []Message) ([]Rejection, error)
}

func fromKafka(m *kafka.Message) Message {
	out := Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}
	if len(m.Headers) > 0 {
		out.Headers = make(map[string]string, len(m.Headers))
		for _, h := range m.Headers {
			out.Headers[h.Key] = string(h.Value)
		}
	}
	return out
}

func toKafka(m *Message) kafka.Message {
	out := kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Time: m.Time}
	for k, v := range m.Headers {
		out.Headers = append(out.Headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	return out
}

// ErrNotYet is wrapped in a Handler's error to say that part of a batch cannot be
// handled yet — it waits on something outside autofix, such as the cluster answering
// — while the rest was: the Consumer hands the same batch again after a backoff, and
// reports itself stalled only when that lasts NotYetPatience.
var ErrNotYet = errors.New("not yet")
