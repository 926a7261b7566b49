package classifier

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/autofix/autofix/failure"
)

// Labelled is an event with the classification a person gave it.
type Labelled struct {
	Event    failure.Event
	Expected Label
	// Source is where the event's text came from; Line is its line in the file.
	Source string
	Line   int
}

// Label is the expected category and retry decision of a labelled event.
type Label struct {
	Category  failure.Category `json:"category"`
	Retryable bool             `json:"retryable"`
}

// ReadLabelled reads a labelled file: JSON lines, each a FailureEvent with an
// "expected": {"category", "retryable"} object (and optionally "source"). Blank lines
// are skipped; any bad line is an error naming it.
func ReadLabelled(r io.Reader) ([]Labelled, error) {
	var out []Labelled
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), failure.MaxPayload+1)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev, err := failure.Decode(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		var extra struct {
			Expected *Label `json:"expected"`
			Source   string `json:"source"`
		}
		if err := json.Unmarshal(line, &extra); err != nil {
			return nil, fmt.Errorf("line %d: expected: %w", n, err)
		}
		if extra.Expected == nil {
			return nil, fmt.Errorf("line %d: expected: required", n)
		}
		out = append(out, Labelled{Event: ev, Expected: *extra.Expected, Source: extra.Source, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Report measures a classifier against labelled events.
type Report struct {
	Total int
	// CategoryCorrect and RetryCorrect count right categories and right retry decisions.
	CategoryCorrect int
	RetryCorrect    int
	// FalseRetries are failures no retry can fix that were called retryable;
	// MissedRetries are retryable failures that were not.
	FalseRetries  int
	MissedRetries int
	// NotRetryable counts the events labelled not retryable; Unknown those
	// classified unknown.
	NotRetryable int
	Unknown      int
	PerCategory  []CategoryStats
	Mistakes     []Mistake
}

// CategoryStats are the precision and recall of one category.
type CategoryStats struct {
	Category failure.Category
	// Support is how many events carry the label; Predicted how many got it.
	Support, Predicted, Correct int
}

// Precision is Correct/Predicted, 0 when nothing was predicted.
func (s CategoryStats) Precision() float64 { return ratio(s.Correct, s.Predicted) }

// Recall is Correct/Support, 0 when nothing carries the label.
func (s CategoryStats) Recall() float64 { return ratio(s.Correct, s.Support) }

// Mistake is one event the classifier got wrong in category or retry decision.
type Mistake struct {
	Item Labelled
	Got  failure.Classification
}

// CategoryAccuracy is the share of events with the right category.
func (r Report) CategoryAccuracy() float64 { return ratio(r.CategoryCorrect, r.Total) }

// RetryAccuracy is the share of events with the right retry decision.
func (r Report) RetryAccuracy() float64 { return ratio(r.RetryCorrect, r.Total) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Evaluate classifies every item with c and scores the results.
func Evaluate(c *Classifier, items []Labelled) Report {
	stats := map[failure.Category]*CategoryStats{}
	stat := func(cat failure.Category) *CategoryStats {
		if s, ok := stats[cat]; ok {
			return s
		}
		s := &CategoryStats{Category: cat}
		stats[cat] = s
		return s
	}
	r := Report{Total: len(items)}
	for _, it := range items {
		got := c.Classify(&it.Event)
		want := it.Expected
		stat(want.Category).Support++
		stat(got.Category).Predicted++
		catOK, retryOK := got.Category == want.Category, got.Retryable == want.Retryable
		if !want.Retryable {
			r.NotRetryable++
		}
		if got.Category == failure.Unknown {
			r.Unknown++
		}
		if catOK {
			r.CategoryCorrect++
			stat(got.Category).Correct++
		}
		if retryOK {
			r.RetryCorrect++
		} else if got.Retryable {
			r.FalseRetries++
		} else {
			r.MissedRetries++
		}
		if !catOK || !retryOK {
			r.Mistakes = append(r.Mistakes, Mistake{Item: it, Got: got})
		}
	}
	for _, cat := range failure.Categories() {
		if s, ok := stats[cat]; ok {
			r.PerCategory = append(r.PerCategory, *s)
		}
	}
	return r
}

// Write prints the report as a table, and the mistakes when verbose.
func (r Report) Write(w io.Writer, verbose bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "category\tsupport\tpredicted\tprecision\trecall\t")
	for _, s := range r.PerCategory {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%.3f\t\n", s.Category, s.Support, s.Predicted, s.Precision(), s.Recall())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nevents:                   %d\n", r.Total)
	fmt.Fprintf(w, "category accuracy:        %.3f (%d/%d)\n", r.CategoryAccuracy(), r.CategoryCorrect, r.Total)
	fmt.Fprintf(w, "retry-decision accuracy:  %.3f (%d/%d)\n", r.RetryAccuracy(), r.RetryCorrect, r.Total)
	fmt.Fprintf(w, "false retries:            %d (%.1f%% of the %d not retryable)\n", r.FalseRetries, 100*ratio(r.FalseRetries, r.NotRetryable), r.NotRetryable)
	fmt.Fprintf(w, "missed retries:           %d (%.1f%% of the %d retryable)\n", r.MissedRetries, 100*ratio(r.MissedRetries, r.Total-r.NotRetryable), r.Total-r.NotRetryable)
	fmt.Fprintf(w, "answered unknown:         %d (%.1f%%)\n", r.Unknown, 100*ratio(r.Unknown, r.Total))
	if verbose && len(r.Mistakes) > 0 {
		fmt.Fprintf(w, "\nmistakes:\n")
		for _, m := range r.Mistakes {
			fmt.Fprintf(w, "  line %d %s: want %s/%v, got %s/%v (rules %v) %s\n", m.Item.Line, m.Item.Event.ID,
				m.Item.Expected.Category, m.Item.Expected.Retryable, m.Got.Category, m.Got.Retryable,
				m.Got.Rules, m.Item.Source)
		}
	}
	return nil
}
