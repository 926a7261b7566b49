package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
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

// helperArgs is the environment variable that makes TestTokenProcessHelper run one
// `autofix token` command line (its arguments separated by newlines).
const helperArgs = "AUTOFIX_TOKEN_HELPER_ARGS"

// TestTokenProcessHelper is not a test: TestTokenChangesFromManyProcesses runs this
// test binary as separate `autofix token` processes through it. Each waits for its
// standard input to close, so that they all start their change together.
func TestTokenProcessHelper(t *testing.T) {
	args := os.Getenv(helperArgs)
	if args == "" {
		return
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(run(strings.Split(args, "\n"), strings.NewReader(""), io.Discard, os.Stderr))
}

// TestTokenChangesFromManyProcesses: `autofix token create` and `revoke` run as
// separate processes at once never undo one another's change.
func TestTokenChangesFromManyProcesses(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	for i := range n {
		if _, _, err := runToken(t, "create", "--name", fmt.Sprintf("old-%d", i), "--role", "viewer", "--data-dir", dir); err != nil {
			t.Fatal(err)
		}
	}
	type proc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		stderr bytes.Buffer
	}
	procs := make([]*proc, 0, 2*n)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("new-%d", i))
		for _, args := range [][]string{
			{"token", "create", "--name", fmt.Sprintf("new-%d", i), "--role", "approver", "--data-dir", dir},
			{"token", "revoke", fmt.Sprintf("old-%d", i), "--data-dir", dir},
		} {
			p := &proc{cmd: exec.Command(os.Args[0], "-test.run=^TestTokenProcessHelper$")} // #nosec G204 -- this test binary
			p.cmd.Env = append(os.Environ(), helperArgs+"="+strings.Join(args, "\n"))
			p.cmd.Stderr = &p.stderr
			var err error
			if p.stdin, err = p.cmd.StdinPipe(); err != nil {
				t.Fatal(err)
			}
			if err := p.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			procs = append(procs, p)
		}
	}
	for _, p := range procs {
		_ = p.stdin.Close()
	}
	for _, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("%v: %v\n%s", p.cmd.Env[len(p.cmd.Env)-1], err, p.stderr.String())
		}
	}
	store, err := auth.OpenStore(filepath.Join(dir, auth.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range store.List() {
		got = append(got, tk.Name)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("after %d concurrent token creates and %d revokes in separate processes the file holds %v, want %v", n, n, got, want)
	}
}
