package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// TestModelsLifecycle: a candidate trained on the ledger is registered with its
// provenance and scored against the active version on the retries received after
// its training data; models that say every retry fails fail the gates and are promoted only
// when forced with a reason; a rollback goes back; the list says which is active.
func TestModelsLifecycle(t *testing.T) {
	dir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	fillLedger(t, store, trainPlan(100, 0))
	_ = store.Close()
	cfg := filepath.Join(dir, "autofix.yaml")
	if err := os.WriteFile(cfg, []byte("models:\n  promotion: {window: 87600h, minOutcomes: 10}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := []string{"--config", cfg, "--data-dir", dir}
	must := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runCmd(t, "", append(args, at...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s\n%s", strings.Join(args, " "), code, stderr, stdout)
		}
		return stdout
	}
	candidate := filepath.Join(dir, "candidate.json")
	must("train", "--from-ledger", "--out", candidate)
	out := must("models", "register", candidate, "--by", "ada", "--note", "february")
	if !strings.Contains(out, "as version 2 (parent 1, ledger, sha256 ") {
		t.Errorf("register says %q; want version 2, parent 1 (the embedded models, registered first), trained on the ledger", out)
	}
	out = must("models", "promote", "2", "--dry-run")
	if !strings.Contains(out, "scored on 20 retries received 2026-02-05T07:00:00Z to ") {
		t.Errorf("promote --dry-run says:\n%s\nwant the 20 retries received after the candidate's training data", out)
	}

	m, err := models.Default()
	if err != nil {
		t.Fatal(err)
	}
	// Models that say every retry fails (P(success) 5%), where half succeed.
	m.Name, m.Success = "pessimist", &models.Logistic{Weights: []float64{-3, 0}}
	data, _ := m.Save()
	pessimist := filepath.Join(dir, "pessimist.json")
	if err := os.WriteFile(pessimist, data, 0o600); err != nil {
		t.Fatal(err)
	}
	must("models", "register", pessimist, "--by", "ada")
	code, stdout, stderr := runCmd(t, "", append([]string{"models", "promote", "3", "--by", "ada"}, at...)...)
	if code == 0 || !strings.Contains(stderr, "model version 3 is not promoted: ") || !strings.Contains(stdout, "gates failed:\n  ") {
		t.Errorf("promote of models that say every retry fails: exit %d\n%s\n%s; want the gates failed, and nothing promoted", code, stdout, stderr)
	}
	if code, _, stderr := runCmd(t, "", append([]string{"models", "promote", "3", "--force"}, at...)...); code == 0 ||
		!strings.Contains(stderr, "reason: required") {
		t.Errorf("promote --force without a reason: exit %d, %s; want the reason asked for", code, stderr)
	}
	out = must("models", "promote", "3", "--force", "--reason", "a test of the gates", "--by", "ada")
	if !strings.Contains(out, "version 3 is active (force, promotion 2, from version 1)") {
		t.Errorf("promote --force says:\n%s", out)
	}
	if code, _, stderr := runCmd(t, "", append([]string{"models", "rollback", "1"}, at...)...); code == 0 || !strings.Contains(stderr, "--reason") {
		t.Errorf("rollback without a reason: exit %d, %s", code, stderr)
	}
	out = must("models", "rollback", "1", "--reason", "it expects every retry to fail", "--by", "val")
	if !strings.Contains(out, "rolled back to version 1 (promotion 3, from version 3)") {
		t.Errorf("rollback says:\n%s", out)
	}

	out = must("models", "list")
	for _, want := range []string{"\n1        *", "rollback 3 -> 1 by val: it expects every retry to fail", "force 1 -> 3 by ada: a test of the gates"} {
		if !strings.Contains(out, want) {
			t.Errorf("list does not say %q:\n%s", want, out)
		}
	}
	var views []api.ModelVersionView
	for _, line := range strings.Split(strings.TrimSpace(must("models", "list", "--json")), "\n") {
		var v api.ModelVersionView
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("list --json line %q: %v", line, err)
		}
		views = append(views, v)
	}
	if len(views) != 3 || !views[2].Active || views[1].Source != ledger.SourceLedger || views[1].DataTo == nil || views[1].Note != "february" {
		t.Errorf("list --json = %+v; want 3 versions, 1 active, 2 trained on the ledger with its window", views)
	}
	if code, _, stderr := runCmd(t, "", append([]string{"models", "register", "--embedded"}, at...)...); code == 0 ||
		!strings.Contains(stderr, "already registered as version 1") {
		t.Errorf("register --embedded when they are version 1: exit %d, %s; want them found registered", code, stderr)
	}
	if code, _, stderr := runCmd(t, "", append([]string{"models", "register"}, at...)...); code == 0 || !strings.Contains(stderr, "--embedded") {
		t.Errorf("register without a file: exit %d, %s; want a file or --embedded asked for", code, stderr)
	}
	saved := filepath.Join(dir, "saved.json")
	must("models", "show", "2", "--out", saved)
	got, _ := os.ReadFile(saved)
	want, _ := os.ReadFile(candidate)
	if !bytes.Equal(got, want) {
		t.Error("show --out did not write the registered artifact as it was")
	}
}
