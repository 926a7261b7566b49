package rulesdiff

import (
	"context"
	"fmt"
	"sync"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/recommender"
)

// DefaultLast is how many events a replay takes by default.
const DefaultLast = 1000

// pageSize is how many remediations Replay reads at a time: each holds an event of
// up to failure.MaxPayload bytes, so the page bounds the memory a replay holds.
const pageSize = 100

// Lister lists the ledger's remediations, newest first, a page at a time:
// *ledger.Store.
type Lister interface {
	List(ctx context.Context, f ledger.Filter) ([]ledger.Remediation, error)
}

// Replay replays the last n failure events the ledger holds (fewer if it holds
// fewer), newest first, through current and candidate. Messages without an event
// are skipped and do not count towards n. It stops with ctx's error once ctx is done.
func Replay(ctx context.Context, l Lister, n int, current, candidate Classifier) (Report, error) {
	if n <= 0 {
		return Report{}, fmt.Errorf("replay: %d events: want at least 1", n)
	}
	d := New(current, candidate)
	after := ""
	for d.sum.Replayed < n {
		limit := min(pageSize, n-d.sum.Replayed)
		page, err := l.List(ctx, ledger.Filter{After: after, Limit: limit})
		if err != nil {
			return Report{}, fmt.Errorf("read the ledger: %w", err)
		}
		for i := range page {
			if err := d.Add(ctx, &page[i]); err != nil {
				return Report{}, err
			}
		}
		if len(page) < limit {
			break
		}
		after = page[len(page)-1].EventID
	}
	return d.Report(), nil
}

// defaultFallback is the learned text fallback that ships with autofix, decoded once.
var defaultFallback = sync.OnceValues(models.DefaultFallback)

// Modelled is a classifier that may have a learned model of its own:
// *classifier.Classifier.
type Modelled interface {
	Classifier
	// Model returns the classifier's learned model, nil if it has none.
	Model() *classifier.Model
}

// Serving returns c as serve classifies with it: when c has no learned model of its
// own (classifier.model: none), serve's recommender names the category of what c
// leaves unknown with the learned text fallback that ships with autofix, and so does
// what Serving returns.
func Serving(c Modelled) (Classifier, error) {
	if c.Model() != nil {
		return c, nil
	}
	fb, err := defaultFallback()
	if err != nil {
		return nil, err
	}
	return withFallback{c, fb}, nil
}

// withFallback is a classifier and the fallback for what it leaves unknown.
type withFallback struct {
	c  Classifier
	fb recommender.Fallback
}

func (w withFallback) ClassifyContext(ctx context.Context, ev *failure.Event) (failure.Classification, []classifier.RuleError, error) {
	cl, errs, err := w.c.ClassifyContext(ctx, ev)
	if err != nil {
		return cl, errs, err
	}
	return recommender.WithFallback(cl, ev, w.fb, recommender.DefaultFallbackThreshold), errs, nil
}
