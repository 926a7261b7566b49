package classifier

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
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
	// Ambiguous is set when two people labelled the event independently and
	// disagreed; Expected is then the first's (who read the whole thread).
	Ambiguous bool
	// Second is the second, independent labeller's classification, when there was one.
	Second *Label
}

// Label is the expected category and retry decision of a labelled event.
type Label struct {
	Category  failure.Category `json:"category"`
	Retryable bool             `json:"retryable"`
}

// ReadLabelled reads a labelled file: JSON lines, each a FailureEvent with an
// "expected": {"category", "retryable"} object (and optionally "source", and a second
// labeller's "second" label with "ambiguous": true where it differs). Blank lines are
// skipped; any bad line is an error naming it.
func ReadLabelled(r io.Reader) ([]Labelled, error) {
	var out []Labelled
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), failure.MaxPayload+1)
	n := 1
	for ; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev, err := failure.Decode(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		var extra struct {
			Expected  *Label          `json:"expected"`
			Source    string          `json:"source"`
			Ambiguous bool            `json:"ambiguous"`
			Second    json.RawMessage `json:"second"`
		}
		if err := json.Unmarshal(line, &extra); err != nil {
			return nil, fmt.Errorf("line %d: expected: %w", n, err)
		}
		if extra.Expected == nil {
			return nil, fmt.Errorf("line %d: expected: required", n)
		}
		if !extra.Expected.Category.Valid() {
			return nil, fmt.Errorf("line %d: expected.category: %q is not a category of the taxonomy", n, extra.Expected.Category)
		}
		second, err := readSecond(extra.Second, *extra.Expected, extra.Ambiguous)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, Labelled{Event: ev, Expected: *extra.Expected, Source: extra.Source, Line: n, Ambiguous: extra.Ambiguous, Second: second})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n, err)
	}
	return out, nil
}

// readSecond reads a line's second label, nil when it has none: both fields are
// required, and a line whose second label differs from its first must be marked
// ambiguous (one marked ambiguous may agree with it: a first label corrected after
// its round's first run to the second's).
func readSecond(raw json.RawMessage, first Label, ambiguous bool) (*Label, error) {
	if len(raw) == 0 || string(raw) == "null" {
		if ambiguous {
			return nil, errors.New("ambiguous: true needs the second label (second)")
		}
		return nil, nil
	}
	var s struct {
		Category  *failure.Category `json:"category"`
		Retryable *bool             `json:"retryable"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("second: %w", err)
	}
	switch {
	case s.Category == nil:
		return nil, errors.New("second.category: required")
	case !s.Category.Valid():
		return nil, fmt.Errorf("second.category: %q is not a category of the taxonomy", *s.Category)
	case s.Retryable == nil:
		return nil, errors.New("second.retryable: required")
	}
	second := &Label{Category: *s.Category, Retryable: *s.Retryable}
	if *second != first && !ambiguous {
		return nil, errors.New("second: differs from expected, so the line must be marked ambiguous")
	}
	return second, nil
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
	// Unambiguous scores the events whose two labels agreed (nil when no event was
	// marked ambiguous).
	Unambiguous *Report
	// Either scores each ambiguous event's category and retry decision each against
	// whichever of its two labels agrees with it (nil when no event was marked
	// ambiguous): where two careful labellers disagree, either answer is one a person
	// would give. A retry is false only when both labellers said no retry can fix the
	// failure. The two are scored apart, so a category from one label and a retry
	// decision from the other count as right. Its counts are never worse than the
	// first labels'; its false-retry rate, over fewer failures, can be.
	Either *Report
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
	got := make([]failure.Classification, len(items))
	for i := range items {
		got[i] = c.Classify(&items[i].Event)
	}
	return report(items, got)
}

// report scores got, the classifications of items, all of them and the unambiguous.
func report(items []Labelled, got []failure.Classification) Report {
	r := score(items, got)
	var agreed []Labelled
	var agreedGot []failure.Classification
	for i, it := range items {
		if !it.Ambiguous {
			agreed, agreedGot = append(agreed, it), append(agreedGot, got[i])
		}
	}
	if len(agreed) < len(items) {
		u := score(agreed, agreedGot)
		r.Unambiguous = &u
		e := score(eitherLabel(items, got), got)
		e.NotRetryable = 0
		for _, it := range items {
			if !it.Expected.Retryable && (!it.Ambiguous || it.Second == nil || !it.Second.Retryable) {
				e.NotRetryable++
			}
		}
		r.Either = &e
	}
	return r
}

// eitherLabel returns items with each ambiguous item's expected category, and apart
// from it its retry decision, replaced by its second label's where got agrees with
// that one instead: a retry is false only when both labellers said no retry can fix
// it.
func eitherLabel(items []Labelled, got []failure.Classification) []Labelled {
	out := slices.Clone(items)
	for i := range out {
		it := &out[i]
		if !it.Ambiguous || it.Second == nil {
			continue
		}
		if got[i].Category == it.Second.Category {
			it.Expected.Category = it.Second.Category
		}
		if got[i].Retryable == it.Second.Retryable {
			it.Expected.Retryable = it.Second.Retryable
		}
	}
	return out
}

// score scores the classifications got of items.
func score(items []Labelled, results []failure.Classification) Report {
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
	for i, it := range items {
		got := results[i]
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
	if u := r.Unambiguous; u != nil {
		fmt.Fprintf(w, "unambiguous events:       %d (the two labellers agreed): category %.3f, retry decision %.3f, false retries %d (%.1f%%)\n",
			u.Total, u.CategoryAccuracy(), u.RetryAccuracy(), u.FalseRetries, 100*ratio(u.FalseRetries, u.NotRetryable))
	}
	if e := r.Either; e != nil {
		fmt.Fprintf(w, "either label:             category %.3f, retry decision %.3f, false retries %d (%.1f%% of the %d both labellers called not retryable)\n",
			e.CategoryAccuracy(), e.RetryAccuracy(), e.FalseRetries, 100*ratio(e.FalseRetries, e.NotRetryable), e.NotRetryable)
	}
	if verbose && len(r.Mistakes) > 0 {
		fmt.Fprintf(w, "\nmistakes:\n")
		for _, m := range r.Mistakes {
			amb := ""
			if m.Item.Ambiguous {
				amb = " (ambiguous)"
			}
			fmt.Fprintf(w, "  line %d %s%s: want %s/%v, got %s/%v (rules %v) %s\n", m.Item.Line, m.Item.Event.ID, amb,
				m.Item.Expected.Category, m.Item.Expected.Retryable, m.Got.Category, m.Got.Retryable,
				m.Got.Rules, m.Item.Source)
		}
	}
	return nil
}
