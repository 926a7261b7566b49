package classifier_test

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
)

// TestShippedClassifierOnMixedLogs runs the classifier as serve runs it (embedded
// rules, knowledge and model) on logs where a line that a rule reads as a cause is
// not what ended the job: a warning, a clean-up step, a wait the client got through,
// a chained exception. The rule files' own tests run the rules alone; these check what
// production decides.
func TestShippedClassifierOnMixedLogs(t *testing.T) {
	c, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/shipped-cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		// The event's own decoder would take over a struct that embeds it: decode twice.
		var ev failure.Event
		var tc struct {
			ID   string `json:"id"`
			Want struct {
				Category  failure.Category `json:"category"`
				Retryable bool             `json:"retryable"`
				Why       string           `json:"why"`
			} `json:"want"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		if err := json.Unmarshal(sc.Bytes(), &tc); err != nil || tc.Want.Why == "" {
			t.Fatalf("line %d: no want: %v", n+1, err)
		}
		n++
		got := c.Classify(&ev)
		if (tc.Want.Category != "" && got.Category != tc.Want.Category) || got.Retryable != tc.Want.Retryable {
			t.Errorf("%s (%s): got %s retryable=%v (rules %v), want %s retryable=%v",
				tc.ID, tc.Want.Why, got.Category, got.Retryable, got.Rules, tc.Want.Category, tc.Want.Retryable)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("read %d cases, want at least 10", n)
	}
}
