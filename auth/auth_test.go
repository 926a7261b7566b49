package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParseRole(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Role
		ok   bool
	}{
		{"viewer", Viewer, true}, {"approver", Approver, true}, {"admin", Admin, true},
		{"", "", false}, {"Admin", "", false}, {"root", "", false}, {" admin", "", false},
	} {
		got, err := ParseRole(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseRole(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) || !strings.Contains(err.Error(), "viewer, approver or admin")) {
			t.Errorf("ParseRole(%q) error %q does not name the value and the valid roles", tc.in, err)
		}
	}
}

func TestAllows(t *testing.T) {
	roles := []Role{Viewer, Approver, Admin}
	for i, r := range roles {
		for j, need := range roles {
			if got, want := r.Allows(need), i >= j; got != want {
				t.Errorf("%s.Allows(%s) = %v, want %v", r, need, got, want)
			}
		}
		if r.Allows("") || r.Allows("root") {
			t.Errorf("%s allows an unknown role", r)
		}
		if Role("root").Allows(r) || Role("").Allows(r) {
			t.Errorf("an unknown role allows %s", r)
		}
	}
}

func openStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := OpenStore(path)
	if err != nil {
		t.Fatalf("OpenStore(%s): %v", path, err)
	}
	return s
}

func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", StoreFile) // the directory is created too
	s := openStore(t, path)
	if n := len(s.List()); n != 0 {
		t.Fatalf("a missing file holds %d tokens, want 0", n)
	}
	secrets := map[string]string{}
	for _, tc := range []struct {
		name string
		role Role
	}{{"zed", Viewer}, {"alice", Admin}, {"ci-bot", Approver}} {
		secret, err := s.Create(tc.name, tc.role)
		if err != nil {
			t.Fatalf("Create(%s, %s): %v", tc.name, tc.role, err)
		}
		if !strings.HasPrefix(secret, "afx_") || len(secret) != len("afx_")+43 || strings.ContainsAny(secret, "=+/") {
			t.Errorf("Create(%s) secret %q: want afx_ and 43 characters of unpadded base64url", tc.name, secret)
		}
		secrets[tc.name] = secret
	}
	if secrets["zed"] == secrets["alice"] {
		t.Error("two tokens got the same secret")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range secrets {
		if strings.Contains(string(data), strings.TrimPrefix(secret, "afx_")) {
			t.Errorf("the token file holds %s's secret", name)
		}
	}

	s = openStore(t, path)
	got := s.List()
	var names []string
	for _, tok := range got {
		names = append(names, tok.Name)
		if tok.Hash != hashSecret(secrets[tok.Name]) || tok.Created.IsZero() {
			t.Errorf("reopened token %+v: want the hash of its secret and a creation time", tok)
		}
	}
	if strings.Join(names, ",") != "alice,ci-bot,zed" {
		t.Errorf("List() names = %v, want alice,ci-bot,zed (sorted)", names)
	}
	if got[0].Role != Admin || got[1].Role != Approver || got[2].Role != Viewer {
		t.Errorf("List() roles = %s %s %s, want admin approver viewer", got[0].Role, got[1].Role, got[2].Role)
	}

	if err := s.Revoke("ci-bot"); err != nil {
		t.Fatalf("Revoke(ci-bot): %v", err)
	}
	if err := s.Revoke("ci-bot"); !errors.Is(err, ErrNoToken) {
		t.Errorf("Revoke(ci-bot) again = %v, want ErrNoToken", err)
	}
	if got := openStore(t, path).Tokens(); len(got) != 2 || got[0].Name != "alice" || got[1].Name != "zed" {
		t.Errorf("after revoking ci-bot, reopened tokens = %+v, want alice and zed", got)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestCreateErrors(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), StoreFile))
	if _, err := s.Create("alice", Viewer); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		role Role
		want string // in the error
	}{
		{"alice", Admin, `name "alice"`},
		{"", Viewer, `name ""`},
		{"Alice", Viewer, `name "Alice"`},
		{"-bob", Viewer, `name "-bob"`},
		{"bob-", Viewer, `name "bob-"`},
		{"bob.smith", Viewer, `name "bob.smith"`},
		{strings.Repeat("a", 64), Viewer, "name"},
		{"bob", "root", `role "root"`},
		{"bob", "", `role ""`},
	} {
		_, err := s.Create(tc.name, tc.role)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%q, %q) = %v, want an error naming %s", tc.name, tc.role, err, tc.want)
		}
	}
	if n := len(s.Tokens()); n != 1 {
		t.Errorf("failed creations left %d tokens, want 1", n)
	}
	if _, err := s.Create(strings.Repeat("a", 63), Viewer); err != nil {
		t.Errorf("Create of a 63-character name: %v", err)
	}
}

func TestOpenStoreErrors(t *testing.T) {
	good := hashSecret("x")
	for _, tc := range []struct {
		name, file, want string
	}{
		{"not JSON", `{"tokens":`, "tokens file"},
		{"bad role", `{"tokens":[{"name":"a","role":"root","sha256":"` + good + `"}]}`, `tokens[0]: token "a": role "root"`},
		{"bad name", `{"tokens":[{"name":"A","role":"admin","sha256":"` + good + `"}]}`, `tokens[0]: name "A"`},
		{"bad hash", `{"tokens":[{"name":"a","role":"admin","sha256":"abc"}]}`, `tokens[0]: token "a": sha256`},
		{"duplicate", `{"tokens":[{"name":"a","role":"admin","sha256":"` + good + `"},{"name":"a","role":"viewer","sha256":"` + good + `"}]}`, `tokens[1]: name "a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), StoreFile)
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenStore(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenStore = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), StoreFile))
	alice, err := s.Create("alice", Approver)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := s.Create("bob", Viewer)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(s.Tokens())
	if a.Len() != 2 {
		t.Errorf("Len() = %d, want 2", a.Len())
	}
	for _, tc := range []struct {
		secret string
		want   Principal
		ok     bool
	}{
		{alice, Principal{"alice", Approver}, true},
		{bob, Principal{"bob", Viewer}, true},
		{"", Principal{}, false},
		{alice[:len(alice)-1], Principal{}, false},
		{alice + "x", Principal{}, false},
		{hashSecret(alice), Principal{}, false}, // the hash is not the secret
		{"afx_" + strings.Repeat("A", 43), Principal{}, false},
	} {
		got, ok := a.Authenticate(tc.secret)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Authenticate(%.8q…) = %+v, %v; want %+v, %v", tc.secret, got, ok, tc.want, tc.ok)
		}
	}

	if err := s.Revoke("alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Authenticate(alice); !ok {
		t.Error("alice was refused before the authenticator learned of the revocation")
	}
	a.Set(s.Tokens())
	if p, ok := a.Authenticate(alice); ok {
		t.Errorf("Authenticate(revoked alice) = %+v, want refused", p)
	}
	if p, ok := a.Authenticate(bob); !ok || p.Name != "bob" {
		t.Errorf("Authenticate(bob) after Set = %+v, %v; want bob", p, ok)
	}
	if a.Len() != 1 {
		t.Errorf("Len() = %d, want 1", a.Len())
	}

	a.Set([]Token{{Name: "broken", Role: Admin, Hash: "zz"}, {Name: "long", Role: Admin, Hash: strings.Repeat("0", 66)}})
	if a.Len() != 0 {
		t.Errorf("tokens with malformed hashes: Len() = %d, want 0", a.Len())
	}
	if _, ok := NewAuthenticator(nil).Authenticate(bob); ok {
		t.Error("an empty authenticator accepted a secret")
	}
}

// TestAuthenticateConcurrentSet is for the race detector: Set while requests
// authenticate.
func TestAuthenticateConcurrentSet(t *testing.T) {
	secret := "afx_" + strings.Repeat("s", 43)
	tokens := []Token{{Name: "a", Role: Admin, Hash: hashSecret(secret)}}
	a := NewAuthenticator(tokens)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				if _, ok := a.Authenticate(secret); !ok {
					t.Error("Authenticate refused a secret that every set holds")
					return
				}
			}
		})
	}
	for i := range 1000 {
		a.Set(append(tokens, Token{Name: fmt.Sprint("t", i), Role: Viewer, Hash: hashSecret(fmt.Sprint(i))}))
	}
	wg.Wait()
}

func TestFirstStart(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, StoreFile))
	secret, created, err := FirstStart(s, dir)
	if err != nil || !created || secret == "" {
		t.Fatalf("FirstStart on an empty store = %q, %v, %v; want a secret, created", secret, created, err)
	}
	path := filepath.Join(dir, AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", AdminTokenFile, fi.Mode().Perm())
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != secret {
		t.Errorf("%s holds %q (%v), want the secret", AdminTokenFile, data, err)
	}
	if p, ok := NewAuthenticator(openStore(t, filepath.Join(dir, StoreFile)).Tokens()).Authenticate(secret); !ok || p != (Principal{"admin", Admin}) {
		t.Errorf("the first-start secret authenticates as %+v, %v; want admin, admin", p, ok)
	}

	again, created, err := FirstStart(openStore(t, filepath.Join(dir, StoreFile)), dir)
	if err != nil || created || again != "" {
		t.Errorf("FirstStart on a store with a token = %q, %v, %v; want nothing", again, created, err)
	}
	if data, _ := os.ReadFile(path); string(data) != secret {
		t.Error("the second FirstStart changed the admin token file")
	}
}

func TestFirstStartUnwritable(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, StoreFile))
	// A file where the directory should be: the secret cannot be written.
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, created, err := FirstStart(s, blocker); err == nil || created {
		t.Fatalf("FirstStart into a file = %v, %v; want an error", created, err)
	}
	if n := len(openStore(t, filepath.Join(dir, StoreFile)).Tokens()); n != 0 {
		t.Errorf("a failed FirstStart left %d tokens, want 0 (no one has the secret)", n)
	}
}

func secretObject(data map[string]string) *corev1.Secret {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "autofix", Name: "autofix-tokens"}, Data: map[string][]byte{}}
	for k, v := range data {
		sec.Data[k] = []byte(v)
	}
	return sec
}

const (
	s1 = "afx_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	s2 = "an-operators-own-secret-of-32-characters"
)

func TestFromSecret(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewSimpleClientset(secretObject(map[string]string{"ci": "approver:" + s1, "ops": " admin:" + s2 + "\n"}))
	got, err := FromSecret(ctx, kube, "autofix", "autofix-tokens")
	if err != nil {
		t.Fatalf("FromSecret: %v", err)
	}
	want := []Token{{Name: "ci", Role: Approver, Hash: hashSecret(s1)}, {Name: "ops", Role: Admin, Hash: hashSecret(s2)}}
	if len(got) != len(want) {
		t.Fatalf("FromSecret = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Role != want[i].Role || got[i].Hash != want[i].Hash {
			t.Errorf("FromSecret[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	a := NewAuthenticator(got)
	if p, ok := a.Authenticate(s2); !ok || p != (Principal{"ops", Admin}) {
		t.Errorf("Authenticate(ops's secret) = %+v, %v; want ops, admin", p, ok)
	}

	_, err = FromSecret(ctx, kube, "autofix", "missing")
	if !apierrors.IsNotFound(err) {
		t.Errorf("FromSecret of a missing Secret = %v, want NotFound", err)
	}
}

func TestFromSecretErrors(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		secretPart       string // must not appear in the error
	}{
		{"bad role", "ci", "root:" + s1, s1},
		{"no colon", "ci", s1, s1},
		{"bare secret with a colon", "ci", "hunter2hunter2:" + s1, "hunter2"},
		{"empty role", "ci", ":" + s1, s1},
		{"short secret", "ci", "admin:sesame-open-sesame", "sesame"},
		{"space in secret", "ci", "admin:" + s1[:20] + " " + s1[20:], s1[:20]},
		{"bad key", "CI", "admin:" + s1, s1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewSimpleClientset(secretObject(map[string]string{"good": "viewer:" + s2, tc.key: tc.value}))
			_, err := FromSecret(context.Background(), kube, "autofix", "autofix-tokens")
			if err == nil {
				t.Fatal("FromSecret accepted the Secret")
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("key %q", tc.key)) {
				t.Errorf("error %q does not name key %q", err, tc.key)
			}
			if strings.Contains(err.Error(), tc.secretPart) || strings.Contains(err.Error(), s2) {
				t.Errorf("error %q repeats a secret", err)
			}
		})
	}
}

// BenchmarkAuthenticate is the cost every API request pays, with 100 tokens.
func BenchmarkAuthenticate(b *testing.B) {
	tokens := make([]Token, 100)
	for i := range tokens {
		tokens[i] = Token{Name: fmt.Sprint("t", i), Role: Viewer, Hash: hashSecret(newSecret())}
	}
	a := NewAuthenticator(tokens)
	secret := newSecret()
	for b.Loop() {
		a.Authenticate(secret)
	}
}
