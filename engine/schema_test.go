package engine

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// TestLedgerWideErrorIsNotPoison: when the ledger answers but fails every event
// alike (here a column its schema lacks), intake fails the batch and quarantines
// nothing. A second review found a ledger without a column of the attempts table
// quarantining every good event, /readyz green, after an upgrade.
func TestLedgerWideErrorIsNotPoison(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	store, err := ledger.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("ALTER TABLE attempts DROP COLUMN token"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	pol := policy.Default()
	in := &Intake{Ledger: store, Recommender: sharedRecommender(t), Policy: &pol}
	batch := []ingest.Message{
		{Topic: "f", Offset: 1, Value: mustJSON(t, oomOf("good-1", "ml", "train", 8<<30, nil, 1))},
		{Topic: "f", Offset: 2, Value: mustJSON(t, oomOf("good-2", "ml", "etl", 8<<30, nil, 1))},
	}
	rej, err := in.Handle(ctx, batch)
	if err == nil {
		t.Errorf("Handle on a ledger that fails every event = %d rejections, no error; want the batch failed, nothing quarantined", len(rej))
	}
	for _, m := range batch {
		if _, gerr := store.Get(ctx, RejectedID(&m)); gerr == nil {
			t.Errorf("message %d was quarantined: the ledger's fault was taken for the message's", m.Offset)
		}
	}
	if _, err := ledger.Open(ctx, path); err == nil {
		t.Error("opening a ledger without a column its migrations record as added succeeded; want an error at start")
	}
}
