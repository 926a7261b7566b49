package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic describes a topic autofix uses.
type Topic struct {
	Name       string
	Partitions int
	// Retention is how long records are kept; 0 keeps the broker's default.
	Retention time.Duration
	// RetentionBytes caps each partition's size; 0 keeps the broker's default.
	RetentionBytes int64
	// MaxMessageBytes is the topic's max.message.bytes (the largest record batch
	// the broker accepts, compressed); 0 keeps the broker's default.
	MaxMessageBytes int
}

// EnsureTopics creates the topics that do not exist yet, connecting to brokers with
// sec. A topic that exists is left as it is (its partition count is not changed).
func EnsureTopics(ctx context.Context, brokers []string, sec Security, topics ...Topic) error {
	if len(brokers) == 0 {
		return errors.New("ensure topics: no brokers")
	}
	// kafka.Client.CreateTopics finds the controller itself (Conn.CreateTopics only
	// works on it) and refreshes metadata afterwards.
	tr := sec.transport()
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		tc := kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: -1}
		if t.Retention > 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "retention.ms",
				ConfigValue: strconv.FormatInt(t.Retention.Milliseconds(), 10)})
		}
		if t.RetentionBytes > 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "retention.bytes",
				ConfigValue: strconv.FormatInt(t.RetentionBytes, 10)})
		}
		if t.MaxMessageBytes > 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "max.message.bytes",
				ConfigValue: strconv.Itoa(t.MaxMessageBytes)})
		}
		req.Topics = append(req.Topics, tc)
	}
	resp, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", sec.diagnose(ctx, brokers, err))
	}
	for name, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	// A consumer group leader that reads metadata before a new topic's partitions show
	// up assigns nothing and, without a partition change, never rebalances: wait
	// until the brokers report every topic.
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	for {
		err := topicsVisible(ctx, brokers, sec, names)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics created but not visible: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// topicsVisible asks the brokers in turn, connecting with sec, until one answers
// whether every topic in names has partitions.
func topicsVisible(ctx context.Context, brokers []string, sec Security, names []string) error {
	var err error
	for _, b := range brokers {
		var conn *kafka.Conn
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		conn, err = sec.dial(dctx, b)
		cancel()
		if err != nil {
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(dialTimeout))
		err = partitionsOf(conn, names)
		_ = conn.Close()
		return err
	}
	return err
}

func partitionsOf(conn *kafka.Conn, names []string) error {
	parts, err := conn.ReadPartitions(names...)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range parts {
		seen[p.Topic] = true
	}
	for _, n := range names {
		if !seen[n] {
			return fmt.Errorf("topic %s has no partitions yet", n)
		}
	}
	return nil
}

// Reachable reports whether one of brokers accepts a connection made with sec (TLS
// handshake and SASL authentication included) and answers a Metadata request on it,
// all within timeout. Unlike ApiVersions, a broker with SASL answers Metadata only
// after authentication.
func Reachable(ctx context.Context, brokers []string, sec Security, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for _, b := range brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("broker %q: %w", b, err)
		}
		// A fresh connection each time: kafka.Client's shared transport would answer
		// from its pooled connections and cached metadata.
		conn, err := sec.dial(ctx, b)
		if err != nil {
			last = err
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(timeout))
		_, err = conn.Brokers()
		_ = conn.Close()
		if err != nil {
			last = explain(err)
			continue
		}
		return nil
	}
	return fmt.Errorf("no broker reachable: %w", last)
}
