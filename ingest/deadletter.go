package ingest

import (
	"context"
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
)

// Header names on dead-lettered records. The value is the original record's bytes,
// cut to MaxDeadLetterValue.
const (
	HeaderError     = "autofix-error"
	HeaderTopic     = "autofix-source-topic"
	HeaderPartition = "autofix-source-partition"
	HeaderOffset    = "autofix-source-offset"
	// HeaderTruncated is set on a copy whose value (or key) was cut: the original
	// sizes in bytes, "value=N key=M".
	HeaderTruncated = "autofix-truncated"
)

// Bounds on a dead-letter copy. A copy holds a cut of the original's value and key,
// the reason and a few of the original's headers, so that it stays well under the
// broker's limit (Kafka's default is about 1 MiB, and it applies to compressed
// batches: an uncompressed copy of a message that came in compressed may not fit).
const (
	MaxDeadLetterValue    = 256 << 10
	maxDeadLetterKey      = 4 << 10
	maxDeadLetterReason   = 4 << 10
	maxDeadLetterHeaders  = 32
	maxDeadLetterHeaderKV = 1 << 10
)

// DeadLetterFailer may be implemented by a Handler that wants to hear of a rejected
// message whose dead-letter copy could not be written even in its smallest form: the
// Consumer then calls it and commits the message anyway, so that one message cannot
// stall its partition.
type DeadLetterFailer interface {
	DeadLetterFailed(ctx context.Context, m *Message, reason string, err error) error
}

// deadLetter is the bounded copy of m rejected for reason. With minimal it keeps
// only the reason and the source headers: the form of last resort.
func deadLetter(m *Message, reason string, minimal bool) Message {
	headers := make(map[string]string, maxDeadLetterHeaders+5)
	if !minimal {
		// The original's headers travel with it, as many as fit; autofix's own names
		// are set below, whatever the original claimed.
		keys := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			if !strings.HasPrefix(k, "autofix-") && len(k) <= maxDeadLetterHeaderKV {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys[:min(len(keys), maxDeadLetterHeaders)] {
			headers[k] = cut(m.Headers[k], maxDeadLetterHeaderKV)
		}
	}
	headers[HeaderError] = cut(reason, maxDeadLetterReason)
	headers[HeaderTopic] = cut(m.Topic, maxDeadLetterHeaderKV)
	headers[HeaderPartition], headers[HeaderOffset] = strconv.Itoa(m.Partition), strconv.FormatInt(m.Offset, 10)
	maxValue, maxKey := MaxDeadLetterValue, maxDeadLetterKey
	if minimal {
		maxValue, maxKey = 0, 0
	}
	out := Message{Key: m.Key, Value: m.Value, Headers: headers}
	if len(m.Value) > maxValue || len(m.Key) > maxKey {
		out.Value, out.Key = m.Value[:min(len(m.Value), maxValue)], m.Key[:min(len(m.Key), maxKey)]
		headers[HeaderTruncated] = "value=" + strconv.Itoa(len(m.Value)) + " key=" + strconv.Itoa(len(m.Key))
	}
	return out
}

// cut returns at most n bytes of s, not splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// transient reports whether a write error may go away by itself (the broker is
// restarting, a leader is moving, the network dropped): such a write is tried again.
// Anything else — above all a message the broker refuses, too large or invalid — will
// fail the same way every time.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kafka.ErrGroupClosed) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "EOF")
}
