package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// TestRulesDiffCandidateKeepsModelMinConfidence: the candidate classifies as serve
// would, with classifier.modelMinConfidence as well as minConfidence and authority.
// A candidate identical to the classifier in use (an empty --knowledge directory
// over no classifier.knowledge) must change nothing, whatever the configuration.
func TestRulesDiffCandidateKeepsModelMinConfidence(t *testing.T) {
	// An event the embedded model decides with less confidence than 0.95.
	ev := failure.Event{ID: "ev-odd", Time: time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC), Source: "kubernetes",
		Job: failure.Job{Namespace: "ml", Name: "odd", Kind: failure.Batch, Attempt: 1,
			Resources: failure.Resources{CPUMillis: 1000, MemoryBytes: 1 << 30}},
		Failure: failure.Signals{Reason: "Error", ExitCode: 1, DurationSeconds: 10,
			LogTail: "Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\nRuntimeError: worker stopped while reading the batches"}}
	c, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Classify(&ev)
	if !cl.Learned || cl.Confidence >= 0.95 {
		t.Fatalf("the embedded classifier says %s at %.2f (learned %v): the event does not test a model minimum of 0.95", cl.Category, cl.Confidence, cl.Learned)
	}

	data := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(data, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Record(context.Background(), []ledger.Entry{{EventID: ev.ID, Event: &ev, ChainID: "ml/odd",
		State: ledger.PendingReview, Actor: "policy", ReceivedAt: ev.Time}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := writeFile(t, dir, "autofix.yaml", "dataDir: "+data+"\nclassifier:\n  modelMinConfidence: 0.95\n")
	empty := filepath.Join(dir, "knowledge")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "", "rules", "diff", "--config", config, "--knowledge", empty, "--fail-on-change")
	if code != 0 || !strings.Contains(out, "Replayed 1 failure events: 0 changed.") {
		t.Errorf("rules diff of a candidate identical to the classifier in use = exit %d, stderr %q:\n%s\nwant no change", code, errOut, out)
	}
}
