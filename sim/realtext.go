package sim

import (
	"bufio"
	"bytes"
	_ "embed" // the real messages
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/autofix/autofix/failure"
)

// Text is where the text of a simulated failure (its reason, exit code, message and
// log tail) comes from.
type Text string

const (
	// TextRendered has the simulator write the text itself, from its own templates:
	// the text the rules were written for. It is the default.
	TextRendered Text = "rendered"
	// TextReal gives each failure the text of a real labelled message of its cause's
	// category, so that a policy pays for its classifier's real mistakes.
	TextReal Text = "real"
)

// ParseText reads a text source by name ("rendered" or "real").
func ParseText(name string) (Text, error) {
	switch t := Text(name); t {
	case TextRendered, TextReal:
		return t, nil
	}
	return "", fmt.Errorf("want rendered or real, got %q", name)
}

// Message is the text of one real failure, as a cluster reported it, with the label a
// person gave it.
type Message struct {
	// ID and Source identify the labelled event the text came from; Line is its line
	// in the file.
	ID     string
	Source string
	Line   int
	// Category and Retryable are the label.
	Category  failure.Category
	Retryable bool
	// Reason, ExitCode, Message, LogTail and LogTruncated are the failure signals
	// that replace the simulator's own.
	Reason       string
	ExitCode     int
	Message      string
	LogTail      string
	LogTruncated bool
}

// Corpus is a set of real labelled messages, indexed by category and retry decision.
type Corpus struct {
	pools map[label][]Message
	n     int
}

type label struct {
	category  failure.Category
	retryable bool
}

// ParseCorpus reads labelled messages in the corpus format (rules/testdata/README.md):
// JSON lines, each a FailureEvent with "expected": {"category", "retryable"}. Blank
// lines are skipped. A line that does not decode, or lacks either label field, is an
// error naming the line; so is a corpus with no message.
func ParseCorpus(r io.Reader) (*Corpus, error) {
	c := &Corpus{pools: map[label][]Message{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), failure.MaxPayload+1)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		m, err := parseMessage(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		m.Line = n
		k := label{m.Category, m.Retryable}
		c.pools[k] = append(c.pools[k], m)
		c.n++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if c.n == 0 {
		return nil, errors.New("no messages")
	}
	return c, nil
}

func parseMessage(line []byte) (Message, error) {
	ev, err := failure.Decode(line)
	if err != nil {
		return Message{}, err
	}
	var extra struct {
		Expected *struct {
			Category  *string `json:"category"`
			Retryable *bool   `json:"retryable"`
		} `json:"expected"`
		Source string `json:"source"`
	}
	if err := json.Unmarshal(line, &extra); err != nil {
		return Message{}, fmt.Errorf("expected: %w", err)
	}
	switch e := extra.Expected; {
	case e == nil:
		return Message{}, errors.New("expected: required")
	case e.Category == nil:
		return Message{}, errors.New("expected.category: required")
	case !failure.Category(*e.Category).Valid():
		return Message{}, fmt.Errorf("expected.category: unknown category %q", *e.Category)
	case e.Retryable == nil:
		return Message{}, errors.New("expected.retryable: required")
	}
	sig := ev.Failure
	return Message{
		ID: ev.ID, Source: extra.Source,
		Category: failure.Category(*extra.Expected.Category), Retryable: *extra.Expected.Retryable,
		Reason: sig.Reason, ExitCode: sig.ExitCode, Message: sig.Message, LogTail: sig.LogTail, LogTruncated: sig.LogTruncated,
	}, nil
}

// Len is the number of messages.
func (c *Corpus) Len() int { return c.n }

// Messages returns the messages labelled with category cat and retry decision
// retryable, in file order.
func (c *Corpus) Messages(cat failure.Category, retryable bool) []Message {
	return slices.Clone(c.pools[label{cat, retryable}])
}

// draw picks, with r, a message for a simulated failure of cause: one labelled with
// the cause's category and with the retry decision the taxonomy gives that category
// (failure.Category.DefaultRetryable). The simulator's causes are retryable or not by
// their category alone, so a message labelled otherwise (an image pull that cannot
// succeed, were image_pull simulated as retryable) would contradict the ground truth
// it is given to; ok is false when no message fits.
func (c *Corpus) draw(r *rand.Rand, cause failure.Category) (m Message, ok bool) {
	pool := c.pools[label{cause, cause.DefaultRetryable()}]
	if len(pool) == 0 {
		return Message{}, false
	}
	return pool[r.IntN(len(pool))], true
}

//go:embed realtext/messages.jsonl
var embeddedMessages []byte

// embeddedName names the embedded file in errors.
const embeddedName = "sim/realtext/messages.jsonl"

// loadEmbedded parses the embedded messages once; a variable so that a test can
// give it a malformed file.
var loadEmbedded = sync.OnceValues(func() (*Corpus, error) { return parseEmbedded(embeddedMessages) })

func parseEmbedded(data []byte) (*Corpus, error) {
	c, err := ParseCorpus(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", embeddedName, err)
	}
	return c, nil
}

// RealText returns the real messages embedded in the binary (sim/realtext/messages.jsonl),
// parsed on first use.
func RealText() (*Corpus, error) { return loadEmbedded() }

// textUse says where the text of a failure event came from.
type textUse int

const (
	renderedText textUse = iota // the scenario asks for rendered text
	realText                    // a real message
	fallbackText                // real text asked for, but none of the cause's category
)

// failureText is the event of a failed attempt: rendered by the simulator and, with
// a corpus, given the text of a real message of the cause's category. Its reason,
// exit code and message are the real message's unless the simulated failure's
// reason is one Kubernetes sets (OOMKilled, Evicted, DeadlineExceeded, ...), which it
// would report whatever the program printed, with its own message (the kubelet's
// eviction, the Job's deadline): then, unless the real message has that reason too,
// those stay and what the real message printed is the log. The job, its resources,
// the node, the duration and the usage stay the simulator's, and so does the ground
// truth: the cause. It carries every peak; failureEvent keeps those the scenario's
// telemetry measures.
func (s *Scenario) failureText(ru *run, a int, opt failure.Option, res result, c *Corpus) (failure.Event, textUse) {
	ev := s.event(ru, a, opt, res)
	if c == nil {
		return ev, renderedText
	}
	m, ok := c.draw(s.textRNG(ru, a, res.cause), res.cause)
	if !ok {
		return ev, fallbackText
	}
	sig := &ev.Failure
	switch {
	case !kubernetesReason(sig.Reason):
		sig.Reason, sig.ExitCode = m.Reason, m.ExitCode
		sig.Message, sig.LogTail = m.Message, m.LogTail
	case m.Reason == sig.Reason:
		// The real message has the reason Kubernetes set: its message is Kubernetes'.
		sig.Message, sig.LogTail = m.Message, m.LogTail
	default:
		// Kubernetes reports OOMKilled, Evicted, DeadlineExceeded and the like, with
		// its own message, whatever the program printed: those stay, and what the
		// program printed is its log.
		sig.LogTail = m.printed()
	}
	sig.LogTruncated = m.LogTruncated
	return ev, realText
}

// printed is what the program printed of m, as its log would show it: its log tail,
// then its message (a program's own failure reason puts its last words there).
func (m *Message) printed() string {
	switch {
	case m.Message == "":
		return m.LogTail
	case m.LogTail == "":
		return m.Message
	}
	return strings.TrimRight(m.LogTail, "\n") + "\n" + m.Message
}

// kubernetesReason reports whether reason is one the kubelet or a controller sets
// (rather than the container's own "Error").
func kubernetesReason(reason string) bool {
	switch reason {
	case "", "Error", "Completed", "ContainerCannotRun":
		return false
	}
	return true
}

// textRNG is the generator a failure's real text is drawn with. A recurring job fails
// for the same cause of its own (its memory, its code, its data, its configuration,
// its deadline) with the same text every time, since the same framework and code
// print it: those draws depend on the template and cause only. What its surroundings
// cause (the network, the node, the scheduler, the registry) reads as whatever
// happened that time: those draws depend on the attempt too.
func (s *Scenario) textRNG(ru *run, a int, cause failure.Category) *rand.Rand {
	c := uint64(slices.Index(failure.Categories(), cause) + 1)
	switch cause {
	case failure.NetworkTransient, failure.Preempted, failure.Hardware, failure.SchedulingCapacity,
		failure.ImagePull, failure.DependencyUnavailable, failure.Unknown:
		return rng(s.Seed, 6, c, uint64(ru.t.index), uint64(ru.index), uint64(a))
	}
	return rng(s.Seed, 5, c, uint64(ru.t.index))
}

// countText adds the text of one event shown to a policy to the result.
func countText(res *Result, use textUse, cause failure.Category) {
	switch use {
	case realText:
		res.RealText++
	case fallbackText:
		res.RenderedFallback++
		if !slices.Contains(res.NoRealText, cause) {
			res.NoRealText = append(res.NoRealText, cause)
			order := failure.Categories()
			slices.SortFunc(res.NoRealText, func(a, b failure.Category) int {
				return slices.Index(order, a) - slices.Index(order, b)
			})
		}
	}
}
