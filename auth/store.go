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
// the old file or the new one, never half of one. A Store holds the tokens as last
// read; its changes (Create, Revoke, FirstStart) each read the file afresh and write
// it back under an exclusive lock on the file LockSuffix names beside it, so that
// concurrent changes — from goroutines, or from processes such as two `autofix
// token` commands — never undo one another. Readers take no lock.
type Store struct {
	path   string
	mu     sync.Mutex
	tokens []Token // sorted by name
}

// LockSuffix names the lock file of a token file: its path and this suffix.
const LockSuffix = ".lock"

// storeFile is the file's layout; an object rather than a bare list so that fields
// can be added.
type storeFile struct {
	Tokens []Token `json:"tokens"`
}

// OpenStore reads the token file at path. A missing file is an empty store (it is
// written on the first change); a file that does not parse, or holds a token with a
// bad name, role or hash, is an error naming the token.
func OpenStore(path string) (*Store, error) {
	tokens, err := readTokens(path)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, tokens: tokens}, nil
}

// readTokens reads and checks the token file (none: no tokens), sorted by name.
func readTokens(path string) ([]Token, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator names the data directory
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
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
	sortTokens(f.Tokens)
	return f.Tokens, nil
}

// locked runs fn with the token file locked and s.tokens freshly read from it; the
// caller holds s.mu. fn saves what it changes (s.save).
func (s *Store) locked(fn func() error) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	unlock, err := lockFile(s.path + LockSuffix)
	if err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	defer unlock()
	tokens, err := readTokens(s.path)
	if err != nil {
		return err
	}
	s.tokens = tokens
	return fn()
}

// Create adds a token of that name and role and returns its secret, which is not kept
// anywhere: the caller shows it once. name must be a DNS label (what appears in the
// audit trail) and not already taken.
func (s *Store) Create(name string, role Role) (secret string, err error) {
	if !validName(name) {
		return "", fmt.Errorf("name %q: want %s", name, nameRule)
	}
	if role.rank() == 0 {
		return "", fmt.Errorf("role %q: want viewer, approver or admin", role)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.locked(func() error {
		if s.find(name) >= 0 {
			return fmt.Errorf("name %q: a token of that name exists (revoke it first)", name)
		}
		secret = newSecret()
		return s.save(append(slices.Clone(s.tokens), Token{Name: name, Role: role, Hash: hashSecret(secret),
			Created: time.Now().UTC().Truncate(time.Second)}))
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// Revoke removes the token of that name; it is an error wrapping ErrNoToken if there
// is none.
func (s *Store) Revoke(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.locked(func() error {
		i := s.find(name)
		if i < 0 {
			return fmt.Errorf("token %q: %w", name, ErrNoToken)
		}
		return s.save(slices.Delete(slices.Clone(s.tokens), i, i+1))
	})
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

// save writes tokens to the file and makes them the Store's; the caller holds the
// lock (locked).
func (s *Store) save(tokens []Token) error {
	if tokens == nil {
		tokens = []Token{}
	}
	sortTokens(tokens)
	data, err := json.MarshalIndent(storeFile{Tokens: tokens}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.path, append(data, '\n')); err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	s.tokens = tokens
	return nil
}

// FirstStart gives a new installation its first token. When the store is empty (and
// the caller has no other token source) it creates the admin token "admin", writes its
// secret to dir/AdminTokenFile with mode 0600 and returns it with created=true, for
// the caller to print once; otherwise it does nothing and returns created=false.
func FirstStart(s *Store, dir string) (secret string, created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.locked(func() error {
		if len(s.tokens) > 0 {
			return nil
		}
		secret = newSecret()
		if err := s.save([]Token{{Name: "admin", Role: Admin, Hash: hashSecret(secret),
			Created: time.Now().UTC().Truncate(time.Second)}}); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, AdminTokenFile), []byte(secret)); err != nil {
			// A token whose secret no one has would lock the API for good: take it back.
			if rerr := s.save(nil); rerr != nil {
				return fmt.Errorf("admin token file: %w (and the token stays: %w)", err, rerr)
			}
			return fmt.Errorf("admin token file: %w", err)
		}
		created = true
		return nil
	})
	if err != nil || !created {
		return "", false, err
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
