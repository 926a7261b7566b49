package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/ledger"
)

func TestPolicyAutonomy(t *testing.T) {
	dir := t.TempDir()
	store, err := ledger.Open(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	kind := []string{"oom_memory", "team-a/trainer", "training"}
	args := func(a ...string) []string {
		return append(append([]string{"policy", "autonomy"}, a...), "--data-dir", dir)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a kind that does not pass", args(append([]string{"grant"}, kind...)...), "does not meet policy.autonomy's thresholds"},
		{"forced without a reason", args(append([]string{"grant"}, append(kind, "--force")...)...), "reason: required"},
		{"a bogus category", args("grant", "oom", "team-a/trainer", "training", "--force", "--reason", "x"), "category:"},
		{"an odd template", args("grant", "oom_memory", "team-a/a b", "training", "--force", "--reason", "x"), "template:"},
		{"a bogus job kind", args("grant", "oom_memory", "team-a/trainer", "cron", "--force", "--reason", "x"), "jobKind:"},
		{"no job kind", args("grant", "oom_memory", "team-a/trainer", "--force", "--reason", "x"), "accepts 3 arg(s)"},
		{"a revocation without a reason", args(append([]string{"revoke"}, kind...)...), "--reason: required"},
	} {
		if code, _, stderr := runCmd(t, "", tc.args...); code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, %q; want a failure saying %q", tc.name, code, stderr, tc.want)
		}
	}
	code, out, stderr := runCmd(t, "", args(append([]string{"grant"}, append(kind, "--force", "--reason", "the team asked", "--by", "alice")...)...)...)
	if code != 0 || !strings.Contains(out, "autonomy granted to oom_memory on team-a/trainer (training) by alice (forced past:") {
		t.Fatalf("a forced grant: exit %d %q %q", code, out, stderr)
	}
	if _, out, _ := runCmd(t, "", args("list")...); !strings.Contains(out, "granted (forced) by alice") || !strings.Contains(out, "team-a/trainer") {
		t.Errorf("list = %q, want the forced grant", out)
	}
	if _, out, _ := runCmd(t, "", args("list", "--json")...); !strings.Contains(out, `"forced": true`) {
		t.Errorf("list --json = %q, want the grant's JSON", out)
	}
	if code, out, stderr := runCmd(t, "", args(append([]string{"revoke"}, append(kind, "--reason", "done", "--by", "bob")...)...)...); code != 0 ||
		!strings.Contains(out, "autonomy revoked from oom_memory on team-a/trainer (training) by bob: done") {
		t.Errorf("revoke: exit %d %q %q", code, out, stderr)
	}
	if grants, err := store.AutonomyGrants(context.Background()); err != nil || len(grants) != 0 {
		t.Errorf("grants after the revocation = %+v, %v; want none", grants, err)
	}
	// The kind for the template's JobSets is another kind.
	if code, out, stderr := runCmd(t, "", args(append([]string{"grant"}, append(kind, "--workload", "JobSet", "--force", "--reason", "x",
		"--by", "carol")...)...)...); code != 0 || !strings.Contains(out, "autonomy granted to oom_memory on team-a/trainer (training, JobSet) by carol") {
		t.Errorf("a grant for JobSets: exit %d %q %q", code, out, stderr)
	}
	if grants, err := store.AutonomyGrants(context.Background()); err != nil || len(grants) != 1 || grants[0].Kind.Workload != "JobSet" {
		t.Errorf("grants = %+v, %v; want the JobSets' one", grants, err)
	}
	if code, _, stderr := runCmd(t, "", args(append([]string{"grant"}, append(kind, "--workload", "job set", "--force", "--reason", "x")...)...)...); code == 0 ||
		!strings.Contains(stderr, "workload:") {
		t.Errorf("a bogus workload: exit %d %q; want a failure naming workload", code, stderr)
	}
}
