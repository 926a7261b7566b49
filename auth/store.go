package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Default file names in the data directory.
const (
	// StoreFile holds the tokens' names, roles and hashes.
	StoreFile = "tokens.json"
	// AdminTokenFile holds the secret of the admin token FirstStart creates.
	AdminTokenFile = "admin-token"
)

// ErrNoToken is the error (wrapped) of revoking a token that does not exist.
var ErrNoToken = errors.New("no such token")

// secretPrefix marks autofix's secrets, so that they are recognised in a log or a
// leaked file (and by secret scanners).
const secretPrefix = "afx_"

// Token is a stored token: never the secret, only its SHA-256.
type Token struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Hash    string    `json:"sha256"` // hex SHA-256 of the secret
	Created time.Time `json:"created"`
}

// Store is the token file: JSON, written with mode 0600 to a temporary file that is
// synced and then renamed over the old one, so that a reader (a running serve) sees
// the old file or the new one, never half of one. A Store is a snapshot taken by
// OpenStore: two processes changing the same file at once can lose one's change.
type Store struct {
	path   string
	mu     sync.Mutex
	tokens []Token // sorted by name
}

// storeFile is the file's layout; an object rather than a bare list so that fields
// can be added.
type storeFile struct {
	Tokens []Token `json:"tokens"`
}

// OpenStore reads the token file at path. A missing file is an empty store (it is
// written on the first change); a file that does not parse, or holds a token with a
// bad name, role or hash, is an error naming the token.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	var f storeFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	seen := make(map[string]bool, len(f.Tokens))
	for i, t := range f.Tokens {
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("tokens file %s: tokens[%d]: %w", path, i, err)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("tokens file %s: tokens[%d]: name %q: a second token of that name", path, i, t.Name)
		}
		seen[t.Name] = true
	}
	s.tokens = f.Tokens
	sortTokens(s.tokens)
	return s, nil
}

// Create adds a token of that name and role and returns its secret, which is not kept
// anywhere: the caller shows it once. name must be a DNS label (what appears in the
// audit trail) and not already taken.
func (s *Store) Create(name string, role Role) (secret string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.create(name, role, time.Now())
}

func (s *Store) create(name string, role Role, now time.Time) (string, error) {
	if !validName(name) {
		return "", fmt.Errorf("name %q: want %s", name, nameRule)
	}
	if role.rank() == 0 {
		return "", fmt.Errorf("role %q: want viewer, approver or admin", role)
	}
	if s.find(name) >= 0 {
		return "", fmt.Errorf("name %q: a token of that name exists (revoke it first)", name)
	}
	secret := newSecret()
	old := s.tokens
	s.tokens = append(slices.Clone(old), Token{Name: name, Role: role, Hash: hashSecret(secret), Created: now.UTC().Truncate(time.Second)})
	sortTokens(s.tokens)
	if err := s.save(); err != nil {
		s.tokens = old
		return "", err
	}
	return secret, nil
}

// Revoke removes the token of that name; it is an error wrapping ErrNoToken if there
// is none.
func (s *Store) Revoke(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoke(name)
}

func (s *Store) revoke(name string) error {
	i := s.find(name)
	if i < 0 {
		return fmt.Errorf("token %q: %w", name, ErrNoToken)
	}
	old := s.tokens
	s.tokens = slices.Delete(slices.Clone(old), i, i+1)
	if err := s.save(); err != nil {
		s.tokens = old
		return err
	}
	return nil
}

// List returns the tokens sorted by name, to show them.
func (s *Store) List() []Token { return s.Tokens() }

// Tokens returns the tokens sorted by name, to authenticate against (NewAuthenticator).
func (s *Store) Tokens() []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokens)
}

func (s *Store) find(name string) int {
	return slices.IndexFunc(s.tokens, func(t Token) bool { return t.Name == name })
}

func (s *Store) save() error {
	data, err := json.MarshalIndent(storeFile{Tokens: s.tokens}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.path, append(data, '\n')); err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	return nil
}

// FirstStart gives a new installation its first token. When the store is empty (and
// the caller has no other token source) it creates the admin token "admin", writes its
// secret to dir/AdminTokenFile with mode 0600 and returns it with created=true, for
// the caller to print once; otherwise it does nothing and returns created=false.
func FirstStart(s *Store, dir string) (secret string, created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) > 0 {
		return "", false, nil
	}
	secret, err = s.create("admin", Admin, time.Now())
	if err != nil {
		return "", false, err
	}
	if err := writeFileAtomic(filepath.Join(dir, AdminTokenFile), []byte(secret)); err != nil {
		// A token whose secret no one has would lock the API for good: take it back.
		if rerr := s.revoke("admin"); rerr != nil {
			return "", false, fmt.Errorf("admin token file: %w (and the token stays: %w)", err, rerr)
		}
		return "", false, fmt.Errorf("admin token file: %w", err)
	}
	return secret, true, nil
}

// hashSecret is the hex SHA-256 of a secret, as Token.Hash holds it.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// newSecret returns secretPrefix and 32 random bytes in unpadded base64url.
func newSecret() string {
	b := make([]byte, 32)
	// crypto/rand.Read never returns an error: since Go 1.24 it crashes instead.
	_, _ = rand.Read(b)
	return secretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// check reports the first problem of a token read from the file.
func (t Token) check() error {
	if !validName(t.Name) {
		return fmt.Errorf("name %q: want %s", t.Name, nameRule)
	}
	if t.Role.rank() == 0 {
		return fmt.Errorf("token %q: role %q: want viewer, approver or admin", t.Name, t.Role)
	}
	if b, err := hex.DecodeString(t.Hash); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("token %q: sha256: want %d hex digits", t.Name, 2*sha256.Size)
	}
	return nil
}

// nameRule is what validName accepts. Names go into the audit trail and the log, so
// they are kept plain.
const nameRule = "1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"

// validName reports whether name is a DNS label: see nameRule.
func validName(name string) bool {
	ok := len(name) >= 1 && len(name) <= 63 && name[0] != '-' && name[len(name)-1] != '-'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	return ok
}

func sortTokens(ts []Token) {
	slices.SortFunc(ts, func(a, b Token) int { return strings.Compare(a.Name, b.Name) })
}

// writeFileAtomic replaces path with data, readable by the owner only: a temporary
// file in the same directory is written, synced and renamed over path, so that a
// crash or a concurrent reader never sees a partial file. Renaming also replaces a
// symbolic link at path rather than writing through it.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// CreateTemp already uses 0600; say so explicitly, as this is the point.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// Sync the directory so that the rename itself survives a crash. Best effort:
	// some file systems cannot sync a directory, and the new file is complete anyway.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
