package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/ledger"
)

func TestPolicyPauseResume(t *testing.T) {
	dir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	paused := func() bool {
		p, err := store.Paused(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if code, _, stderr := runCmd(t, "", "policy", "pause", "--data-dir", dir); code == 0 || !strings.Contains(stderr, "--reason") {
		t.Errorf("pause without a reason: exit %d, %q; want a failure asking for --reason", code, stderr)
	}
	if code, out, stderr := runCmd(t, "", "policy", "pause", "--data-dir", dir, "--reason", "bad rollout", "--by", "alice"); code != 0 || !paused() {
		t.Fatalf("pause: exit %d %s %s; paused = %v", code, out, stderr, paused())
	}
	if _, out, _ := runCmd(t, "", "policy", "status", "--data-dir", dir); !strings.Contains(out, "paused: true") {
		t.Errorf("status = %q, want paused: true", out)
	}
	if code, _, _ := runCmd(t, "", "policy", "resume", "--data-dir", dir, "--reason", "fixed"); code != 0 || paused() {
		t.Errorf("resume: exit %d, paused = %v", code, paused())
	}
	if code, _, stderr := runCmd(t, "", "ledger", "--data-dir", filepath.Join(dir, "typo")); code == 0 || !strings.Contains(stderr, "no ledger at") {
		t.Errorf("ledger on a missing directory: exit %d, %q; want it refused, not created", code, stderr)
	}
}
