package rulesdiff

import (
	"context"
	"fmt"

	"github.com/autofix/autofix/ledger"
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
