package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Backends.
const (
	backendSQLite   = "sqlite"
	backendPostgres = "postgres"
)

// maxBind bounds the arguments one statement binds (SQLite allows 32766, PostgreSQL
// 65535); multi-row statements are split to stay under it.
const maxBind = 2000

// sqlitePragmas are set on every SQLite connection through the DSN, so that each
// connection of a pool gets them: write-ahead log, an fsync at every commit, wait up
// to 5 s for another process's lock, and enforced foreign keys.
const sqlitePragmas = "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
	"&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=wal_autocheckpoint(8192)"

// Page caches, in KiB (a negative cache_size): the writer's is the hot one; the
// readers' are small, so that the process's memory stays bounded as the ledger
// grows — at most 64 + 4 x 16 MiB of cache in all.
const (
	sqliteWriterCache = "&_pragma=cache_size(-65536)"
	sqliteReaderCache = "&_pragma=cache_size(-16384)"
)

// sqliteReaders is the size of the SQLite read pool.
const sqliteReaders = 4

// Store is an open ledger. It is safe for concurrent use.
//
// On SQLite it holds two pools on the same file: a writer with a single connection
// (SQLite admits one writer at a time anyway, so one connection serialises this
// process's writes without SQLITE_BUSY between its own connections; its transactions
// begin IMMEDIATE so that they wait, under busy_timeout, for another process's writer
// instead of failing on upgrade) and a small query-only read pool, which WAL lets run
// alongside the writer. On PostgreSQL both are the same pool.
type Store struct {
	w, r    *sql.DB
	backend string
}

// Open opens (creating if needed) the ledger at dsn and migrates it.
//
// A dsn starting with "postgres://" or "postgresql://" names a PostgreSQL database;
// anything else is the path of a SQLite file (a "sqlite:" prefix is allowed and
// stripped), whose directory must exist.
func Open(ctx context.Context, dsn string) (*Store, error) {
	var (
		s   *Store
		err error
	)
	if IsPostgres(dsn) {
		s, err = openPostgres(dsn)
	} else {
		s, err = openSQLite(strings.TrimPrefix(dsn, "sqlite:"))
	}
	if err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("migrate ledger: %w", err)
	}
	if err := s.fillTokens(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("migrate ledger: %w", err)
	}
	if err := s.fillEdited(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("migrate ledger: %w", err)
	}
	return s, nil
}

// fillTokens gives a token to the attempts recorded before tokens that have not been
// submitted yet (their Jobs will carry it). Submitted ones keep none: their Jobs do not.
func (s *Store) fillTokens(ctx context.Context) error {
	var ids []string
	err := queryEach(ctx, s.w, s.q("SELECT event_id FROM attempts WHERE token = '' AND submitted_at = 0 AND outcome = ''"), nil,
		func(r *sql.Rows) error {
			var id string
			err := r.Scan(&id)
			ids = append(ids, id)
			return err
		})
	if err != nil || len(ids) == 0 {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			token, err := newToken()
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.q("UPDATE attempts SET token = ? WHERE event_id = ? AND token = ''"), token, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// IsPostgres reports whether dsn names a PostgreSQL database (a postgres:// or
// postgresql:// URL) rather than a SQLite file.
func IsPostgres(dsn string) bool {
	d := strings.ToLower(dsn)
	return strings.HasPrefix(d, "postgres://") || strings.HasPrefix(d, "postgresql://")
}

func openPostgres(dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	db.SetMaxOpenConns(10)
	db.SetMaxIdleConns(10)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Store{w: db, r: db, backend: backendPostgres}, nil
}

func openSQLite(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open ledger: empty SQLite path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open ledger %s: a SQLite path must not contain '?' or '#'", path)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("open ledger %s: %s is not a directory", path, filepath.Dir(path))
	}
	w, err := sql.Open("sqlite", path+"?"+sqlitePragmas+sqliteWriterCache+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", path+"?"+sqlitePragmas+sqliteReaderCache+"&_pragma=query_only(1)")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	r.SetMaxOpenConns(sqliteReaders)
	r.SetMaxIdleConns(sqliteReaders)
	return &Store{w: w, r: r, backend: backendSQLite}, nil
}

// Close closes the ledger's connections.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return err
	}
	if s.r != s.w {
		return s.r.PingContext(ctx)
	}
	return nil
}

// Backend names the database the ledger is in: "sqlite" or "postgres".
func (s *Store) Backend() string { return s.backend }

// q rewrites a query written with '?' placeholders for the backend: PostgreSQL
// numbers them ($1, $2, ...). Queries must not hold a literal '?'.
func (s *Store) q(query string) string {
	if s.backend != backendPostgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// inTx runs fn in a write transaction, committing when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// inReadTx runs fn in a read-only transaction, which sees one snapshot of the ledger.
func (s *Store) inReadTx(ctx context.Context, fn func(*sql.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.backend == backendPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.r.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// placeholders returns "(?, ?, ?), (?, ?, ?)" for rows rows of cols values.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}

// list returns "?, ?, ?" for n values.
func list(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// insertRows inserts rows (each of len(cols) values) into table, as few multi-row
// statements as maxBind allows, with suffix (e.g. "ON CONFLICT DO NOTHING RETURNING
// x") after the values. When scan is not nil the statements return rows and scan
// is called for each.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, table, cols string, rows [][]any, suffix string, scan func(*sql.Rows) error) error {
	if len(rows) == 0 {
		return nil
	}
	ncols := len(rows[0])
	per := max(1, maxBind/ncols)
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		args := make([]any, 0, len(chunk)*ncols)
		for _, r := range chunk {
			for _, v := range r {
				if str, ok := v.(string); ok {
					v = text(str)
				}
				args = append(args, v)
			}
		}
		query := s.q("INSERT INTO " + table + " (" + cols + ") VALUES " + placeholders(len(chunk), ncols) + " " + suffix)
		if scan == nil {
			if _, err := tx.ExecContext(ctx, query, args...); err != nil {
				return fmt.Errorf("insert %s: %w", table, err)
			}
			continue
		}
		if err := queryEach(ctx, tx, query, args, scan); err != nil {
			return fmt.Errorf("insert %s: %w", table, err)
		}
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// queryEach runs query and calls scan for each row.
func queryEach(ctx context.Context, db querier, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// chunks calls fn with consecutive pieces of ids of at most 500 each.
func chunks(ids []string, fn func([]string) error) error {
	const size = 500
	for start := 0; start < len(ids); start += size {
		if err := fn(ids[start:min(start+size, len(ids))]); err != nil {
			return err
		}
	}
	return nil
}

func anys(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = text(id)
	}
	return out
}

// text makes s storable in a PostgreSQL TEXT column, which refuses NUL bytes and
// invalid UTF-8: an event carrying either must not wedge the batch it is in.
func text(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// nanos is t in unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos, in UTC.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
