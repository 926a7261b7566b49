package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// ConsumerOptions configure a Consumer.
type ConsumerOptions struct {
	Brokers []string
	Topic   string
	GroupID string
	// DeadLetterTopic receives the messages the Handler rejects.
	DeadLetterTopic string
	// MaxBatch is the most messages handed to the Handler at once (default 1000).
	MaxBatch int
	// MaxBatchBytes bounds the bytes of the values of one batch (default 16 MiB); a
	// message that would take a batch past it waits for the next one. With the
	// reader's queue it bounds the memory of what is fetched but not yet committed.
	MaxBatchBytes int
	// Linger is how long a batch waits to fill once it has a message (default 5 ms).
	Linger time.Duration
	// MaxWait is kafka-go's fetch wait, which is also its read deadline: at least
	// 500 ms (the default), or fetches time out against a quiet broker.
	MaxWait time.Duration
	// SessionTimeout is the consumer group session timeout (default 10 s; brokers
	// refuse less than their minimum, 6 s by default).
	SessionTimeout time.Duration
	// Backoff is the first and MaxBackoff the longest wait before a failed batch is
	// handed again (defaults 100 ms and 10 s).
	Backoff, MaxBackoff time.Duration
	// AttemptTimeout bounds each try of handling, dead-lettering or committing a
	// batch (default 30 s); every try gets its own.
	AttemptTimeout time.Duration
	// ShutdownGrace is how long the batch in hand may still take once Run's context
	// is cancelled (default 30 s).
	ShutdownGrace time.Duration
	// DeadLetterPatience bounds how long a dead-letter copy is retried while the
	// broker cannot be reached (default 5 minutes); a copy the broker refuses is not
	// retried as it is. Past it the message is given up on (the Handler hears of it,
	// see DeadLetterFailer) and committed.
	DeadLetterPatience time.Duration
	// NotYetPatience is how long the Handler may keep asking for a batch again
	// (ErrNotYet) before the consumer reports itself stalled (default 5 minutes).
	NotYetPatience time.Duration
	Logger         *slog.Logger

	// Security is how the reader and the dead-letter producer connect (TLS, SASL).
	Security Security
}

func (o *ConsumerOptions) setDefaults() {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 16 << 20
	}
	if o.DeadLetterPatience <= 0 {
		o.DeadLetterPatience = 5 * time.Minute
	}
	if o.NotYetPatience <= 0 {
		o.NotYetPatience = 5 * time.Minute
	}
	if o.Linger <= 0 {
		o.Linger = 5 * time.Millisecond
	}
	if o.MaxWait < 500*time.Millisecond {
		o.MaxWait = 500 * time.Millisecond
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 30 * time.Second
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// ConsumerStats are counters since the Consumer started.
type ConsumerStats struct {
	Consumed, DeadLettered, Batches, Commits, Retries int64
	// DeadLetterFailed counts rejected messages whose copy could not be written even
	// in its smallest form, and that were committed without one.
	DeadLetterFailed int64
	// Lag is the last lag the reader saw (messages behind the end of its partitions).
	Lag int64
}

// Consumer reads a topic in a consumer group and hands batches to a Handler. An
// offset is committed only after the Handler returned for its batch and the batch's
// rejected messages are on the dead-letter topic: delivery is at least once.
type Consumer struct {
	o   ConsumerOptions
	cfg kafka.ReaderConfig
	// r is created by Run: a kafka-go Reader joins its group as soon as it exists, and
	// one that joins before its topic is visible is assigned nothing.
	r   atomic.Pointer[kafka.Reader]
	dlq *Producer
	// deadLetterTo writes dead-letter copies: dlq.Publish (tests replace it).
	deadLetterTo func(ctx context.Context, msgs ...Message) error

	consumed, deadLettered, batches, commits, retries, deadLetterFailed atomic.Int64
	// failing is set while the Handler keeps failing (the consumer is not making progress).
	failing atomic.Bool
	// fetchErr is the last fetch error, nil once a fetch succeeds again.
	fetchErr atomic.Pointer[fetchFailure]
	// processed, when set (by tests, before Run), is called after each batch is
	// handled, dead-lettered and committed or given up on: what a test waits for.
	processed func()
}

// NewConsumer returns a Consumer; it joins the group when Run starts. Run it once.
func NewConsumer(o ConsumerOptions) (*Consumer, error) {
	switch {
	case len(o.Brokers) == 0:
		return nil, errors.New("consumer: no brokers")
	case o.Topic == "":
		return nil, errors.New("consumer: no topic")
	case o.GroupID == "":
		return nil, errors.New("consumer: no group id")
	case o.DeadLetterTopic == "" || o.DeadLetterTopic == o.Topic:
		return nil, errors.New("consumer: the dead-letter topic must be set and differ from the topic")
	}
	o.setDefaults()
	dlq, err := NewProducer(ProducerOptions{Brokers: o.Brokers, Security: o.Security, Topic: o.DeadLetterTopic})
	if err != nil {
		return nil, err
	}
	log := o.Logger.With("component", "kafka-reader")
	cfg := kafka.ReaderConfig{
		Brokers:  o.Brokers,
		Dialer:   o.Security.dialer(),
		GroupID:  o.GroupID,
		Topic:    o.Topic,
		MinBytes: 1,
		MaxBytes: 4 << 20,
		MaxWait:  o.MaxWait,
		// The reader's queue holds fetched messages of up to a MiB each: keep it short.
		QueueCapacity:     100,
		SessionTimeout:    o.SessionTimeout,
		HeartbeatInterval: o.SessionTimeout / 4,
		RebalanceTimeout:  o.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		CommitInterval:    0, // commit synchronously, when told
		// Partitions added later (or a topic created after the group formed) trigger
		// a rebalance instead of being ignored.
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 5 * time.Second,
		StartOffset:            kafka.FirstOffset,
		ReadBackoffMin:         100 * time.Millisecond,
		ReadBackoffMax:         2 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn(fmt.Sprintf(msg, args...))
		}),
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		// Set only when wanted: kafka-go needs an untyped nil Logger to stay quiet.
		cfg.Logger = kafka.LoggerFunc(func(msg string, args ...any) { log.Debug(fmt.Sprintf(msg, args...)) })
	}
	return &Consumer{o: o, cfg: cfg, dlq: dlq, deadLetterTo: dlq.Publish}, nil
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{
		Consumed: c.consumed.Load(), DeadLettered: c.deadLettered.Load(), Batches: c.batches.Load(),
		Commits: c.commits.Load(), Retries: c.retries.Load(), Lag: c.lag(), DeadLetterFailed: c.deadLetterFailed.Load(),
	}
}

func (c *Consumer) lag() int64 {
	if r := c.r.Load(); r != nil {
		return r.Stats().Lag
	}
	return 0
}

// Stalled reports whether the Handler is failing and the consumer is backing off.
func (c *Consumer) Stalled() bool { return c.failing.Load() }

// Run consumes until ctx is cancelled, then finishes the batch in hand (handles it,
// dead-letters, commits), leaves the group and returns nil.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	// A reader that joins its group before the topic is visible is assigned no
	// partitions and stays that way: wait for the topic first.
	for wait := c.o.Backoff; ; wait = min(2*wait, c.o.MaxBackoff) {
		err := topicsVisible(ctx, c.o.Brokers, c.o.Security, []string{c.o.Topic})
		if err == nil {
			break
		}
		c.o.Logger.Warn("waiting for the topic", "topic", c.o.Topic, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	r := kafka.NewReader(c.cfg)
	c.r.Store(r)
	defer func() {
		if err := r.Close(); err != nil {
			c.o.Logger.Warn("closing kafka reader", "err", err)
		}
		if err := c.dlq.Close(); err != nil {
			c.o.Logger.Warn("closing dead-letter producer", "err", err)
		}
	}()
	msgs := make(chan kafka.Message, 64)
	fetchDone := make(chan error, 1)
	go func() { fetchDone <- c.fetch(ctx, msgs) }()

	// In-flight work is finished with a context that outlives ctx by the grace period.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(c.o.ShutdownGrace, cancelWork) })
	defer stopGrace()
	batch := make([]kafka.Message, 0, c.o.MaxBatch)
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	var carry *kafka.Message // fetched, but over the last batch's byte bound
	for {
		clear(batch) // let the values of the last batch go
		batch = batch[:0]
		size := 0
		if carry != nil {
			batch, size, carry = append(batch, *carry), len(carry.Value), nil
		} else {
			select {
			case <-ctx.Done():
				return nil
			case err := <-fetchDone:
				return err
			case m := <-msgs:
				batch, size = append(batch, m), len(m.Value)
			}
		}
		linger.Reset(c.o.Linger)
	fill:
		for len(batch) < c.o.MaxBatch && size < c.o.MaxBatchBytes {
			select {
			case m := <-msgs:
				if size+len(m.Value) > c.o.MaxBatchBytes {
					carry = &m
					break fill
				}
				batch, size = append(batch, m), size+len(m.Value)
			case <-linger.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		err := c.process(work, ctx, h, batch)
		if c.processed != nil {
			c.processed()
		}
		if err != nil {
			// Only cancellation stops processing; the batch is not committed and
			// will be handed out again after a restart.
			return nil
		}
	}
}

// fetch pumps messages from the reader into out until ctx ends. Errors (the broker
// gone, a rebalance) are logged and retried with backoff: kafka-go's reader
// reconnects on its own and goes on from where it was.
func (c *Consumer) fetch(ctx context.Context, out chan<- kafka.Message) error {
	wait := c.o.Backoff
	for {
		m, err := c.r.Load().FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // cancellation is how fetching ends
			}
			c.fetchErr.Store(&fetchFailure{msg: err.Error(), at: time.Now()})
			c.o.Logger.Warn("fetch failed; retrying", "topic", c.o.Topic, "err", err, "in", wait)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait = min(2*wait, c.o.MaxBackoff)
			continue
		}
		c.fetchErr.Store(nil)
		wait = c.o.Backoff
		select {
		case out <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// FetchError is the last fetch error if it is recent (10 s) and fetching has not
// succeeded since, or "". A quiet topic gives no successful fetch to clear it, hence
// the window: while the broker stays away, the reader keeps reporting errors.
func (c *Consumer) FetchError() string {
	if p := c.fetchErr.Load(); p != nil && time.Since(p.at) < 10*time.Second {
		return p.msg
	}
	return ""
}

type fetchFailure struct {
	msg string
	at  time.Time
}

// process hands batch to h until it succeeds, dead-letters the rejected messages and
// commits, each try under work with its own timeout. It gives up (returning an error)
// only when stop is cancelled while it is still backing off.
func (c *Consumer) process(work, stop context.Context, h Handler, batch []kafka.Message) error {
	in := make([]Message, len(batch))
	for i := range batch {
		in[i] = fromKafka(&batch[i])
	}
	var rejected []Rejection
	if err := c.retry(work, stop, "handle batch", func(ctx context.Context) error {
		var err error
		rejected, err = h.Handle(ctx, in)
		return err
	}); err != nil {
		return err
	}
	if len(rejected) > 0 {
		if err := c.deadLetterAll(work, stop, h, in, rejected); err != nil {
			return err
		}
	}
	c.consumed.Add(int64(len(batch)))
	c.batches.Add(1)
	// A failed commit is not retried for long: after a rebalance it cannot succeed, and
	// the messages coming again is what at-least-once allows (the Handler dedupes).
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(work, c.o.AttemptTimeout)
		err := c.r.Load().CommitMessages(ctx, batch...)
		cancel()
		if err == nil {
			c.commits.Add(1)
			return nil
		}
		if attempt == 3 || stop.Err() != nil || work.Err() != nil {
			c.o.Logger.Warn("commit failed; the batch will be delivered again", "err", err, "messages", len(batch))
			return nil //nolint:nilerr // redelivery is what at-least-once allows; the Handler dedupes
		}
		time.Sleep(c.o.Backoff << attempt)
	}
}

// deadLetterAll writes a bounded copy of each rejected message to the dead-letter
// topic. A broker that cannot be reached is waited for, up to DeadLetterPatience; a
// copy the broker refuses is written again alone, then in its minimal form (the
// reason and where the message came from), and then given up on: the Handler hears
// of it and the message is committed with its batch. It returns an error only when
// stop is cancelled meanwhile.
func (c *Consumer) deadLetterAll(work, stop context.Context, h Handler, in []Message, rejected []Rejection) error {
	copies := make([]Message, 0, len(rejected))
	for _, r := range rejected {
		copies = append(copies, deadLetter(&in[r.Index], r.Reason, false))
	}
	publish := func(msgs ...Message) func(context.Context) error {
		return func(ctx context.Context) error { return c.deadLetterTo(ctx, msgs...) }
	}
	// One patience for the whole batch: past it, what is left is given up on at once.
	deadline := time.Now().Add(c.o.DeadLetterPatience)
	err := c.retryTransient(work, stop, "dead-letter", deadline, publish(copies...))
	if err == nil {
		c.deadLettered.Add(int64(len(copies)))
		return nil
	}
	if stop.Err() != nil {
		return err
	}
	// Refused, or the broker stayed away: one at a time, so that a copy the broker
	// refuses does not hold the others back.
	for i, r := range rejected {
		m := &in[r.Index]
		err := c.retryTransient(work, stop, "dead-letter", deadline, publish(copies[i]))
		if err != nil && stop.Err() == nil {
			c.o.Logger.Warn("dead-letter copy refused; sending its headers only", "at", m.Position(), "err", err)
			err = c.retryTransient(work, stop, "dead-letter", deadline, publish(deadLetter(m, r.Reason, true)))
		}
		if stop.Err() != nil {
			return fmt.Errorf("dead-letter: %w", stop.Err())
		}
		if err == nil {
			c.deadLettered.Add(1)
			continue
		}
		c.deadLetterFailed.Add(1)
		c.o.Logger.Error("cannot dead-letter a rejected message; committing it without a copy", "at", m.Position(),
			"reason", cut(r.Reason, 200), "err", err)
		if f, ok := h.(DeadLetterFailer); ok {
			for attempt := range 3 {
				ctx, cancel := context.WithTimeout(work, c.o.AttemptTimeout)
				ferr := f.DeadLetterFailed(ctx, m, r.Reason, err)
				cancel()
				if ferr == nil {
					break
				}
				c.o.Logger.Warn("recording a failed dead-letter", "at", m.Position(), "err", ferr, "attempt", attempt+1)
			}
		}
	}
	return nil
}

// retryTransient runs fn until it succeeds, fails with an error that is not
// transient, deadline passes, or stop is cancelled, backing off as retry does. While
// it waits the consumer reports itself stalled.
func (c *Consumer) retryTransient(work, stop context.Context, what string, deadline time.Time, fn func(context.Context) error) error {
	wait := c.o.Backoff
	defer c.failing.Store(false)
	for {
		try := time.Now().Add(c.o.AttemptTimeout)
		if deadline.Before(try) {
			try = deadline
		}
		ctx, cancel := context.WithDeadline(work, try)
		err := fn(ctx)
		cancel()
		if err == nil || !transient(err) || !time.Now().Add(wait).Before(deadline) {
			return err
		}
		c.failing.Store(true)
		c.retries.Add(1)
		c.o.Logger.Warn(what+" failed; retrying", "err", err, "in", wait)
		select {
		case <-stop.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, c.o.MaxBackoff)
	}
}

// retry runs fn until it succeeds, each try with a context of its own (work with
// AttemptTimeout), backing off exponentially up to MaxBackoff. It stops (returning
// the last error) when stop is cancelled.
func (c *Consumer) retry(work, stop context.Context, what string, fn func(context.Context) error) error {
	wait := c.o.Backoff
	var notYetSince time.Time
	for {
		ctx, cancel := context.WithTimeout(work, c.o.AttemptTimeout)
		err := fn(ctx)
		cancel()
		if err == nil {
			c.failing.Store(false)
			return nil
		}
		c.retries.Add(1)
		if errors.Is(err, ErrNotYet) {
			// Progress, with something outstanding: not a stall unless it lasts.
			if notYetSince.IsZero() {
				notYetSince = time.Now()
			}
			c.failing.Store(time.Since(notYetSince) > c.o.NotYetPatience)
			c.o.Logger.Info(what+": part of the batch must wait; handing it again", "err", err, "in", c.o.Backoff)
			select {
			case <-stop.Done():
				return fmt.Errorf("%s: %w", what, err)
			case <-time.After(min(c.o.Backoff*10, c.o.MaxBackoff)):
			}
			continue
		}
		c.failing.Store(true)
		c.o.Logger.Warn(what+" failed; retrying", "err", err, "in", wait)
		select {
		case <-stop.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, c.o.MaxBackoff)
	}
}
