package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// ProducerOptions configure a Producer.
type ProducerOptions struct {
	Brokers []string
	// Security is how the producer connects to the brokers (TLS, SASL).
	Security Security
	// Topic is where messages go when they do not name one.
	Topic string
	// BatchTimeout bounds how long a write waits to fill a batch. kafka-go's default
	// (1 s) makes every synchronous write take a second; the default here is 5 ms.
	BatchTimeout time.Duration
}

// Producer writes messages to Kafka synchronously: a write returns once every broker
// replica has the messages (acks=all).
type Producer struct {
	w       *kafka.Writer
	t       *kafka.Transport
	brokers []string
	sec     Security
}

// NewProducer returns a Producer; it connects on the first write.
func NewProducer(o ProducerOptions) (*Producer, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("producer: no brokers")
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 5 * time.Millisecond
	}
	t := o.Security.transport()
	return &Producer{t: t, brokers: o.Brokers, sec: o.Security, w: &kafka.Writer{
		Addr:      kafka.TCP(o.Brokers...),
		Transport: t,
		Topic:     o.Topic,
		// Keys are jobs (namespace/name): the events of one job stay in order on one
		// partition. Murmur2 is the Java client's partitioner, so other producers agree.
		Balancer:        &kafka.Murmur2Balancer{},
		BatchTimeout:    o.BatchTimeout,
		BatchSize:       1000,
		BatchBytes:      1 << 20, // Kafka's default message.max.bytes is about 1 MiB
		RequiredAcks:    kafka.RequireAll,
		MaxAttempts:     5,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
	}}, nil
}

// Publish writes msgs and returns when all are acknowledged, or the first error.
func (p *Producer) Publish(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	km := make([]kafka.Message, len(msgs))
	for i := range msgs {
		km[i] = toKafka(&msgs[i])
		if p.w.Topic != "" {
			km[i].Topic = "" // kafka-go refuses a topic on both the writer and the message
		}
	}
	if err := p.w.WriteMessages(ctx, km...); err != nil {
		return fmt.Errorf("publish %d messages: %w", len(msgs), p.sec.diagnose(ctx, p.brokers, summarise(err)))
	}
	return nil
}

// summarise shortens kafka-go's WriteErrors, which lists one error per message.
func summarise(err error) error {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return err
	}
	failed := 0
	var first error
	for _, e := range we {
		if e != nil {
			failed++
			if first == nil {
				first = e
			}
		}
	}
	return fmt.Errorf("%d of %d messages not written, the first because: %w", failed, len(we), first)
}

// Close flushes and closes the producer and its connections.
func (p *Producer) Close() error {
	err := p.w.Close()
	p.t.CloseIdleConnections()
	return err
}
