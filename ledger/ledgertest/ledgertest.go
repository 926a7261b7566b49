// Package ledgertest gives tests a fresh, empty ledger location on every backend: a
// SQLite file always, and a PostgreSQL schema of its own when AUTOFIX_TEST_POSTGRES
// holds a DSN. Without it the PostgreSQL case is skipped with a message, unless
// AUTOFIX_REQUIRE_POSTGRES=1 (as in CI), which makes that a failure.
package ledgertest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// ForEachDSN runs fn as a subtest (or sub-benchmark) per backend, "sqlite" and
// "postgres", with the DSN of an empty ledger location.
func ForEachDSN(t testing.TB, fn func(t testing.TB, dsn string)) {
	run := func(name string, f func(testing.TB)) {
		switch tt := t.(type) {
		case *testing.T:
			tt.Run(name, func(t *testing.T) { f(t) })
		case *testing.B:
			tt.Run(name, func(b *testing.B) { f(b) })
		}
	}
	run("sqlite", func(t testing.TB) { fn(t, filepath.Join(t.TempDir(), "ledger.db")) })
	run("postgres", func(t testing.TB) { fn(t, PostgresDSN(t)) })
}

// PostgresDSN creates a schema of its own for the test in the database named by
// AUTOFIX_TEST_POSTGRES, drops it when the test ends, and returns a DSN whose
// search_path is that schema.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("AUTOFIX_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("AUTOFIX_REQUIRE_POSTGRES") == "1" {
			t.Fatal("AUTOFIX_REQUIRE_POSTGRES=1 but AUTOFIX_TEST_POSTGRES is not set to a postgres:// DSN")
		}
		t.Skip("PostgreSQL backend not tested: set AUTOFIX_TEST_POSTGRES to a postgres:// DSN to run it")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("AUTOFIX_TEST_POSTGRES: %v", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "t_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", base, err)
	}
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		_ = admin.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
