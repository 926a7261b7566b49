package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The model registry: the versions of the retry-success and runtime models autofix
// may run with, and which one is active (modelpromotions.go). The ledger keeps each
// version's artifact as given, with where it came from and how it scored; it does
// not read the artifact: the registry package does.

// MaxModelContent is the largest model artifact the registry keeps, in bytes.
const MaxModelContent = 1 << 20

// maxModelName bounds a version's name, in bytes.
const maxModelName = 256

// ModelSource says what a model version was trained on.
type ModelSource string

// The sources of training data.
const (
	// SourceSimulator: simulated retries only (the embedded default's).
	SourceSimulator ModelSource = "simulator"
	// SourceLedger: the retries the ledger recorded (autofix train --from-ledger).
	SourceLedger ModelSource = "ledger"
	// SourceMixed: the ledger's retries and simulated ones (--with-sim).
	SourceMixed ModelSource = "mixed"
)

// Valid reports whether s is one of the sources.
func (s ModelSource) Valid() bool {
	return s == SourceSimulator || s == SourceLedger || s == SourceMixed
}

// ModelVersion is one registered version of the models.
type ModelVersion struct {
	// Version numbers the versions from 1, in the order they were registered;
	// Parent is the version this one derives from (0: none).
	Version, Parent int
	// Name is the artifact's own name (its training: scenario, seed, data).
	Name string
	// Source is what it was trained on; DataFrom and DataTo, for SourceLedger and
	// SourceMixed, when the ledger's failures it was trained on were received (zero
	// for SourceSimulator).
	Source           ModelSource
	DataFrom, DataTo time.Time
	// CodeVersion is the VCS revision of the autofix that registered it ("unknown"
	// when the binary does not say).
	CodeVersion string
	// Metrics are how its P(success) scored on the retries held out from its
	// training (N 0: the artifact has no evaluation).
	Metrics ModelMetrics
	// Note is what the person who registered it said of it (optional).
	Note string
	// RegisteredBy is who registered it, RegisteredAt when.
	RegisteredBy string
	RegisteredAt time.Time
	// Size is the length of Content in bytes and SHA256 its hash (hex).
	Size   int
	SHA256 string
	// Content is the artifact. Only Model reads it; lists leave it nil.
	Content []byte
}

// ModelMetrics are a probabilistic prediction's scores against outcomes, as the
// models package computes them.
type ModelMetrics struct {
	// N is how many outcomes were scored, Positives how many succeeded.
	N         int `json:"n"`
	Positives int `json:"positives"`
	// AUC is the area under the ROC curve (0 when the outcomes are all of one kind);
	// Brier the mean squared error; LogLoss the mean negative log-likelihood, in nats;
	// ECE the expected calibration error (the mean gap between predicted and observed
	// rates over the reliability table's bins, weighted by their counts).
	AUC     float64 `json:"auc"`
	Brier   float64 `json:"brier"`
	LogLoss float64 `json:"logLoss"`
	ECE     float64 `json:"ece"`
	// Reliability bins the predictions: in a calibrated model each bin's observed
	// rate is close to its mean prediction.
	Reliability []ReliabilityBin `json:"reliability"`
}

// ReliabilityBin is one row of a reliability table: the predictions in [Lo, Hi).
type ReliabilityBin struct {
	Lo        float64 `json:"lo"`
	Hi        float64 `json:"hi"`
	Count     int     `json:"count"`
	Predicted float64 `json:"predicted"`
	Observed  float64 `json:"observed"`
}

// ModelError is the error of a model version or promotion that can never be
// recorded as it is. Field names the part at fault.
type ModelError struct {
	Field, Problem string
}

func (e *ModelError) Error() string { return e.Field + ": " + e.Problem }

// DuplicateModelError is RegisterModel's error for content already registered. It
// is a conflict (errors.Is(err, ErrConflict)).
type DuplicateModelError struct {
	// Version is the version that holds the same content.
	Version int
}

func (e *DuplicateModelError) Error() string {
	return fmt.Sprintf("the same model is already registered as version %d", e.Version)
}

// Is makes a DuplicateModelError an ErrConflict.
func (e *DuplicateModelError) Is(target error) bool { return target == ErrConflict }

// modelsLock is the PostgreSQL advisory lock that orders the registry's writers
// ("autofix3" in ASCII).
const modelsLock = 0x6175746f66697833

// checkText refuses text over max bytes, invalid UTF-8, and control characters
// (other than tabs and line breaks when lines is set).
func checkText(field, s string, max int, lines bool) error {
	switch {
	case len(s) > max:
		return &ModelError{field, fmt.Sprintf("%d bytes is over the %d-byte limit", len(s), max)}
	case !utf8.ValidString(s) || hasControl(s, lines):
		return &ModelError{field, "want valid UTF-8 text without control characters"}
	}
	return nil
}

// checkModel refuses a version that can never be recorded.
func checkModel(v *ModelVersion) error {
	switch {
	case strings.TrimSpace(v.Name) == "":
		return &ModelError{"name", "required"}
	case !v.Source.Valid():
		return &ModelError{"source", fmt.Sprintf("%q, want simulator, ledger or mixed", v.Source)}
	case v.Parent < 0:
		return &ModelError{"parent", fmt.Sprintf("%d, want a version or 0", v.Parent)}
	case v.RegisteredBy == "":
		return &ModelError{"registeredBy", "required"}
	case len(v.Content) == 0:
		return &ModelError{"content", "required"}
	case len(v.Content) > MaxModelContent:
		return &ModelError{"content", fmt.Sprintf("%d bytes is over the %d-byte limit", len(v.Content), MaxModelContent)}
	case !utf8.Valid(v.Content) || strings.IndexByte(string(v.Content), 0) >= 0:
		return &ModelError{"content", "want UTF-8 text without NUL bytes"}
	case v.Source == SourceSimulator && (!v.DataFrom.IsZero() || !v.DataTo.IsZero()):
		return &ModelError{"dataFrom", "a simulator's models have no window of the ledger's data"}
	case v.DataTo.Before(v.DataFrom):
		return &ModelError{"dataTo", "before dataFrom"}
	}
	for _, f := range []struct {
		field, s string
		max      int
		lines    bool
	}{{"name", v.Name, maxModelName, false}, {"codeVersion", v.CodeVersion, maxModelName, false},
		{"registeredBy", v.RegisteredBy, maxActor, false}, {"note", v.Note, MaxCorrectionNote, true}} {
		if err := checkText(f.field, f.s, f.max, f.lines); err != nil {
			return err
		}
	}
	return nil
}

// lockModels orders the registry's writers on PostgreSQL (SQLite has one writer).
func (s *Store) lockModels(ctx context.Context, tx *sql.Tx) error {
	if s.backend != backendPostgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(modelsLock)); err != nil {
		return fmt.Errorf("lock the model registry: %w", err)
	}
	return nil
}

// RegisterModel adds v to the registry as the next version, at v.RegisteredAt (now
// when zero), with an audit row (event id "", action "model-register"), and returns
// it as recorded (Version, Size and SHA256 set; v's own are ignored). The first
// version registered becomes the active one (a promotion row of action
// ModelActivate). A version that can never be recorded is a *ModelError naming the
// field; a parent the registry does not hold is ErrNotFound; content already
// registered is a *DuplicateModelError.
func (s *Store) RegisterModel(ctx context.Context, v ModelVersion) (ModelVersion, error) {
	out, _, err := s.registerModel(ctx, v, false)
	return out, err
}

// RegisterFirstModel registers v as RegisterModel does, but only when the registry
// is empty; otherwise it records nothing and returns version 1 (without its content)
// and false. Replicas that start together on an empty ledger register one first
// version between them.
func (s *Store) RegisterFirstModel(ctx context.Context, v ModelVersion) (ModelVersion, bool, error) {
	return s.registerModel(ctx, v, true)
}

func (s *Store) registerModel(ctx context.Context, v ModelVersion, onlyFirst bool) (ModelVersion, bool, error) {
	if err := checkModel(&v); err != nil {
		return ModelVersion{}, false, err
	}
	sum := sha256.Sum256(v.Content)
	v.SHA256, v.Size = hex.EncodeToString(sum[:]), len(v.Content)
	v.RegisteredAt = atOrNow(v.RegisteredAt).UTC()
	if v.CodeVersion == "" {
		v.CodeVersion = "unknown"
	}
	if v.Metrics.Reliability == nil {
		v.Metrics.Reliability = []ReliabilityBin{}
	}
	reliability, err := json.Marshal(v.Metrics.Reliability)
	if err != nil {
		return ModelVersion{}, false, fmt.Errorf("register model: %w", err)
	}
	registered := false
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockModels(ctx, tx); err != nil {
			return err
		}
		var last int
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM models").Scan(&last); err != nil {
			return fmt.Errorf("register model: %w", err)
		}
		if onlyFirst && last > 0 {
			var err error
			v, err = s.modelVersion(ctx, tx, 1, false)
			return err
		}
		var dup int
		err := tx.QueryRowContext(ctx, s.q("SELECT version FROM models WHERE sha256 = ?"), v.SHA256).Scan(&dup)
		switch {
		case err == nil:
			return &DuplicateModelError{Version: dup}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("register model: %w", err)
		}
		if v.Parent > last {
			return fmt.Errorf("parent version %d: %w", v.Parent, ErrNotFound)
		}
		v.Version = last + 1
		m := &v.Metrics
		_, err = tx.ExecContext(ctx, s.q("INSERT INTO models ("+modelCols+", content) VALUES "+placeholders(1, 20)),
			v.Version, v.Parent, v.Name, string(v.Source), nanos(v.DataFrom), nanos(v.DataTo), v.CodeVersion,
			m.N, m.Positives, m.AUC, m.Brier, m.LogLoss, m.ECE, string(reliability), v.Note, v.RegisteredBy,
			nanos(v.RegisteredAt), v.Size, v.SHA256, string(v.Content))
		if err != nil {
			return fmt.Errorf("register model: %w", err)
		}
		detail := fmt.Sprintf("version %d (%s), parent %d, sha256 %s", v.Version, v.Name, v.Parent, v.SHA256)
		if err := s.addAudit(ctx, tx, "", v.RegisteredAt, v.RegisteredBy, "model-register", "", "", detail); err != nil {
			return err
		}
		registered = true
		if v.Version > 1 {
			return nil
		}
		return s.insertPromotion(ctx, tx, &ModelPromotion{From: 0, To: 1, Action: ModelActivate, Actor: v.RegisteredBy,
			Reason: "the first version registered", At: v.RegisteredAt})
	})
	if err != nil {
		return ModelVersion{}, false, err
	}
	return v, registered, nil
}

// modelCols are the columns of a version, content apart, in the order
// scanModelVersion reads them.
const modelCols = "version, parent, name, source, data_from, data_to, code_version, eval_n, eval_positive, auc, brier, " +
	"log_loss, ece, reliability, note, registered_by, registered_at, size, sha256"

// scanModelVersion reads the columns of modelCols, and content when withContent.
func scanModelVersion(row interface{ Scan(...any) error }, withContent bool) (ModelVersion, error) {
	var (
		v              ModelVersion
		source, reliab string
		from, to, at   int64
		content        string
	)
	m := &v.Metrics
	dest := []any{&v.Version, &v.Parent, &v.Name, &source, &from, &to, &v.CodeVersion, &m.N, &m.Positives,
		&m.AUC, &m.Brier, &m.LogLoss, &m.ECE, &reliab, &v.Note, &v.RegisteredBy, &at, &v.Size, &v.SHA256}
	if withContent {
		dest = append(dest, &content)
	}
	if err := row.Scan(dest...); err != nil {
		return v, err
	}
	v.Source, v.DataFrom, v.DataTo, v.RegisteredAt = ModelSource(source), fromNanos(from), fromNanos(to), fromNanos(at)
	if err := json.Unmarshal([]byte(reliab), &m.Reliability); err != nil {
		return v, fmt.Errorf("version %d: reliability: %w", v.Version, err)
	}
	if withContent {
		v.Content = []byte(content)
	}
	return v, nil
}

// modelVersion reads one version, with its content when withContent.
func (s *Store) modelVersion(ctx context.Context, db querier, version int, withContent bool) (ModelVersion, error) {
	cols := modelCols
	if withContent {
		cols += ", content"
	}
	v, err := scanModelVersion(db.QueryRowContext(ctx, s.q("SELECT "+cols+" FROM models WHERE version = ?"), version), withContent)
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("model version %d: %w", version, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("model version %d: %w", version, err)
	}
	return v, nil
}

// Model returns version of the registry with its content; ErrNotFound if there is
// no such version.
func (s *Store) Model(ctx context.Context, version int) (ModelVersion, error) {
	return s.modelVersion(ctx, s.r, version, true)
}

// Models returns the latest limit versions of the registry (at most 1000), newest
// first, without their content.
func (s *Store) Models(ctx context.Context, limit int) ([]ModelVersion, error) {
	limit = min(max(limit, 1), 1000)
	var out []ModelVersion
	err := queryEach(ctx, s.r, s.q("SELECT "+modelCols+" FROM models ORDER BY version DESC LIMIT ?"), []any{limit},
		func(r *sql.Rows) error {
			v, err := scanModelVersion(r, false)
			out = append(out, v)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	return out, nil
}
