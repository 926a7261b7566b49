package autonomy

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// GrantSource is where Grants reads the grants in force: *ledger.Store.
type GrantSource interface {
	AutonomyGrants(ctx context.Context) ([]ledger.AutonomyChange, error)
}

// Grants is one replica's snapshot of the grants in force, for the intake: looking
// a kind up reads memory only. It is refreshed by Refresh (Run polls it), so
// replicas converge on a change within one poll interval; the replica that made
// the change refreshes at once. Until its first refresh it holds no grant: every
// fix goes where the rules send it. It is safe for concurrent use.
type Grants struct {
	src GrantSource
	cur atomic.Pointer[map[ledger.Kind]policy.Grant]
	// changed, if set, is called with the number of grants after each refresh.
	changed func(n int)
}

// NewGrants returns an empty snapshot of src's grants.
func NewGrants(src GrantSource) *Grants { return &Grants{src: src} }

// Granted returns the grant of kind k, if it has one (a Workload of "Job" is a batch
// Job's, as "").
func (g *Grants) Granted(k ledger.Kind) (policy.Grant, bool) {
	m := g.cur.Load()
	if m == nil {
		return policy.Grant{}, false
	}
	if k.Workload == ledger.WorkloadJob {
		k.Workload = ""
	}
	gr, ok := (*m)[k]
	return gr, ok
}

// Len is how many grants the snapshot holds.
func (g *Grants) Len() int {
	if m := g.cur.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// Refresh reads the grants in force. On an error the snapshot stays as it was.
func (g *Grants) Refresh(ctx context.Context) error {
	list, err := g.src.AutonomyGrants(ctx)
	if err != nil {
		return err
	}
	m := make(map[ledger.Kind]policy.Grant, len(list))
	for _, c := range list {
		m[c.Kind] = policy.Grant{Seq: c.Seq, Category: c.Kind.Category, Template: c.Kind.Template, JobKind: c.Kind.JobKind,
			Workload: c.Kind.Workload, Actor: c.Actor, At: c.At}
	}
	g.cur.Store(&m)
	if g.changed != nil {
		g.changed(len(m))
	}
	return nil
}

// Run refreshes the snapshot every interval until ctx ends. A failed refresh keeps
// the last snapshot (a grant revoked meanwhile stays in force here until the
// ledger answers again) and is logged.
func (g *Grants) Run(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := g.Refresh(ctx); err != nil && ctx.Err() == nil {
			log.Warn("autonomy: could not read the grants in force; keeping the last ones read", "err", err, "in", interval)
		}
	}
}
