package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autofix/autofix/auth"
)

// runToken runs `autofix token args...` through newTokenCmd.
func runToken(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newTokenCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestTokenCreateListRevoke(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := runToken(t, "create", "--name", "alice", "--role", "approver", "--data-dir", dir)
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, stderr)
	}
	secret := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(secret, "afx_") || strings.Contains(secret, "\n") {
		t.Fatalf("token create stdout = %q, want the secret alone on one line", out)
	}
	if !strings.Contains(stderr, "alice") || strings.Contains(stderr, secret) {
		t.Errorf("token create stderr = %q, want advice about alice without the secret", stderr)
	}
	path := filepath.Join(dir, auth.StoreFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v; want mode 0600", fi, err)
	}
	store, err := auth.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := auth.NewAuthenticator(store.Tokens()).Authenticate(secret); !ok || p != (auth.Principal{Name: "alice", Role: auth.Approver}) {
		t.Errorf("the printed secret authenticates as %+v, %v; want alice, approver", p, ok)
	}

	if _, _, err := runToken(t, "create", "--name", "bob", "--role", "viewer", "--data-dir", dir); err != nil {
		t.Fatalf("token create bob: %v", err)
	}
	out, _, err = runToken(t, "list", "--data-dir", dir)
	if err != nil {
		t.Fatalf("token list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME ROLE CREATED" ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "alice approver 20") ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[2]), " "), "bob viewer 20") {
		t.Errorf("token list =\n%s\nwant a header, alice and bob", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, store.Tokens()[0].Hash) {
		t.Errorf("token list shows a secret or a hash:\n%s", out)
	}

	if _, _, err := runToken(t, "revoke", "alice", "--data-dir", dir); err != nil {
		t.Fatalf("token revoke alice: %v", err)
	}
	if out, _, _ := runToken(t, "list", "--data-dir", dir); strings.Contains(out, "alice") {
		t.Errorf("token list after revoking alice =\n%s", out)
	}
	if _, _, err := runToken(t, "revoke", "alice", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "alice") {
		t.Errorf("revoking alice again = %v, want an error naming alice", err)
	}
}

func TestTokenCreateErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := runToken(t, "create", "--name", "ops", "--role", "admin", "--data-dir", dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"--role", "admin"}, "--name"},
		{[]string{"--name", "x"}, "--role"},
		{[]string{"--name", "x", "--role", "root"}, `--role: "root"`},
		{[]string{"--name", "Bad Name", "--role", "viewer"}, `name "Bad Name"`},
		{[]string{"--name", "ops", "--role", "viewer"}, `name "ops"`},
	} {
		out, _, err := runToken(t, append([]string{"create", "--data-dir", dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || out != "" {
			t.Errorf("token create %v = %v, stdout %q; want an error naming %s and no output", tc.args, err, out, tc.want)
		}
	}
}

func TestTokenListEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	out, stderr, err := runToken(t, "list", "--data-dir", dir)
	if err != nil || strings.TrimSpace(out) != "NAME  ROLE  CREATED" || !strings.Contains(stderr, dir) {
		t.Errorf("token list of a missing file = %v, %q, %q; want the header and a note naming the file", err, out, stderr)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("token list created the data directory")
	}
}
