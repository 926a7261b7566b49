package rulesdiff

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// Classifier classifies an event, giving up with ctx's error once ctx is done:
// *classifier.Classifier.
type Classifier interface {
	ClassifyContext(ctx context.Context, ev *failure.Event) (failure.Classification, []classifier.RuleError, error)
}

// MaxRuleErrors bounds the distinct rule errors a report lists.
const MaxRuleErrors = 20

// Verdict is what one classifier says of one event.
type Verdict struct {
	Category   failure.Category `json:"category"`
	Retryable  bool             `json:"retryable"`
	Action     failure.Action   `json:"action"`
	Confidence float64          `json:"confidence"`
	// Rules are the ids of the rules that support Category, strongest first.
	Rules []string `json:"rules"`
	// Learned is set when the category comes from a learned model, not the rules.
	Learned bool `json:"learned,omitempty"`
}

func verdict(cl *failure.Classification) Verdict {
	rules := cl.Rules
	if rules == nil {
		rules = []string{}
	}
	return Verdict{Category: cl.Category, Retryable: cl.Retryable, Action: cl.Action, Confidence: cl.Confidence,
		Rules: rules, Learned: cl.Learned}
}

// Change is an event whose category, retry decision or action the candidate changes.
type Change struct {
	ID string `json:"id"`
	// Job is the failed job, namespace/name.
	Job        string    `json:"job"`
	ReceivedAt time.Time `json:"receivedAt"`
	// Recorded is the category autofix recorded when the event came in ("" when the
	// ledger has none).
	Recorded  failure.Category `json:"recorded,omitempty"`
	Current   Verdict          `json:"current"`
	Candidate Verdict          `json:"candidate"`
}

// Cell is a cell of the change matrix: how many events the candidate moves from
// one category to another.
type Cell struct {
	From  failure.Category `json:"from"`
	To    failure.Category `json:"to"`
	Count int              `json:"count"`
}

// Summary counts the events replayed and what changed.
type Summary struct {
	// Replayed is how many failure events both classifiers classified.
	Replayed int `json:"replayed"`
	// Skipped is how many messages among them the ledger holds without a readable
	// event (rejected as malformed, or damaged): nothing to replay.
	Skipped int `json:"skipped"`
	// Changed is how many events changed in category, retry decision or action
	// (a change of confidence alone is not a change).
	Changed         int `json:"changed"`
	CategoryChanges int `json:"categoryChanges"`
	// RetryChanges is NewlyRetried + NoLongerRetried: the events whose retry
	// decision changes.
	RetryChanges    int `json:"retryChanges"`
	NewlyRetried    int `json:"newlyRetried"`
	NoLongerRetried int `json:"noLongerRetried"`
	ActionChanges   int `json:"actionChanges"`
	// RuleErrorEvents is how many events some candidate rule failed to evaluate on
	// (such a rule counts as not matched).
	RuleErrorEvents int `json:"ruleErrorEvents"`
}

// Report is the outcome of a replay.
type Report struct {
	Summary Summary `json:"summary"`
	// Matrix holds the category changes, the most frequent first.
	Matrix []Cell `json:"matrix"`
	// Changes are the changed events in the order replayed.
	Changes []Change `json:"changes"`
	// RuleErrors are the distinct errors of candidate rules, at most MaxRuleErrors.
	RuleErrors []string `json:"ruleErrors"`
}

// Diff compares two classifiers one recorded event at a time. Not safe for
// concurrent use.
type Diff struct {
	current, candidate Classifier
	sum                Summary
	changes            []Change
	matrix             map[[2]failure.Category]int
	ruleErrs           []string
}

// New returns a Diff of candidate against current.
func New(current, candidate Classifier) *Diff {
	return &Diff{current: current, candidate: candidate, matrix: map[[2]failure.Category]int{}}
}

// Add replays one remediation the ledger holds: its event through both classifiers.
// One without an event is counted as skipped. The error is ctx's, once it is done.
func (d *Diff) Add(ctx context.Context, r *ledger.Remediation) error {
	if r.Event == nil {
		d.sum.Skipped++
		return nil
	}
	cur, _, err := d.current.ClassifyContext(ctx, r.Event)
	if err != nil {
		return fmt.Errorf("replay %s: %w", r.EventID, err)
	}
	cand, ruleErrs, err := d.candidate.ClassifyContext(ctx, r.Event)
	if err != nil {
		return fmt.Errorf("replay %s: %w", r.EventID, err)
	}
	d.sum.Replayed++
	if len(ruleErrs) > 0 {
		d.sum.RuleErrorEvents++
		for _, e := range ruleErrs {
			if msg := e.Error(); len(d.ruleErrs) < MaxRuleErrors && !slices.Contains(d.ruleErrs, msg) {
				d.ruleErrs = append(d.ruleErrs, msg)
			}
		}
	}
	category, retry, action := cur.Category != cand.Category, cur.Retryable != cand.Retryable, cur.Action != cand.Action
	if !category && !retry && !action {
		return nil
	}
	d.sum.Changed++
	if category {
		d.sum.CategoryChanges++
		d.matrix[[2]failure.Category{cur.Category, cand.Category}]++
	}
	if retry {
		d.sum.RetryChanges++
		if cand.Retryable {
			d.sum.NewlyRetried++
		} else {
			d.sum.NoLongerRetried++
		}
	}
	if action {
		d.sum.ActionChanges++
	}
	c := Change{ID: r.EventID, Job: r.Event.Job.Namespace + "/" + r.Event.Job.Name, ReceivedAt: r.ReceivedAt,
		Current: verdict(&cur), Candidate: verdict(&cand)}
	if r.Recommendation != nil {
		c.Recorded = r.Recommendation.Classification.Category
	} else {
		c.Recorded = r.Category
	}
	d.changes = append(d.changes, c)
	return nil
}

// Report returns what the events added so far show.
func (d *Diff) Report() Report {
	rep := Report{Summary: d.sum, Matrix: []Cell{}, Changes: slices.Clone(d.changes), RuleErrors: slices.Clone(d.ruleErrs)}
	if rep.Changes == nil {
		rep.Changes = []Change{}
	}
	if rep.RuleErrors == nil {
		rep.RuleErrors = []string{}
	}
	for k, n := range d.matrix {
		rep.Matrix = append(rep.Matrix, Cell{From: k[0], To: k[1], Count: n})
	}
	slices.SortFunc(rep.Matrix, func(a, b Cell) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return rep
}
