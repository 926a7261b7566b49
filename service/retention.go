package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/autofix/autofix/ledger"
)

// pruneEvery is how often the leader applies the ledger's retention.
const pruneEvery = time.Hour

// pruneLedger deletes, now and then every pruneEvery until ctx ends, the
// remediations that ended more than retention ago.
func pruneLedger(ctx context.Context, store *ledger.Store, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		n, err := store.Prune(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("applying the ledger's retention", "err", err)
		case n > 0:
			log.Info("ledger retention applied", "deleted", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
