package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// Ledger is what the registry reads and writes of the ledger: *ledger.Store.
type Ledger interface {
	RegisterModel(ctx context.Context, v ledger.ModelVersion) (ledger.ModelVersion, error)
	RegisterFirstModel(ctx context.Context, v ledger.ModelVersion) (ledger.ModelVersion, bool, error)
	Model(ctx context.Context, version int) (ledger.ModelVersion, error)
	Models(ctx context.Context, limit int) ([]ledger.ModelVersion, error)
	ActiveModel(ctx context.Context) (int, error)
	PromoteModel(ctx context.Context, p ledger.ModelPromotion) (ledger.ModelPromotion, error)
	ModelPromotions(ctx context.Context, limit int) ([]ledger.ModelPromotion, error)
	EachRetry(ctx context.Context, f ledger.RetryFilter, fn func(*ledger.Retry) error) (ledger.RetryStats, error)
	SetModelShadow(ctx context.Context, sh ledger.ModelShadow) (ledger.ModelShadow, error)
	ModelShadowState(ctx context.Context) (ledger.ModelShadow, error)
	EachShadowPrediction(ctx context.Context, f ledger.ShadowFilter, fn func(*ledger.ShadowPrediction) error) error
}

// Options configure a registry.
type Options struct {
	// Ledger holds the registry. Required.
	Ledger Ledger
	// Catalogue prices resources and says each GPU model's memory, as the
	// predictions the gates score need (the service's).
	Catalogue failure.Catalogue
	// Gates are the promotion's gates.
	Gates Gates
	// InUse are the models this process runs before Poll first loads the active
	// version (the embedded default when nil).
	InUse *models.Models
	// OnChange is called by Poll, after it has loaded a new active version, with
	// the version and its models (nil: nothing to tell).
	OnChange func(version int, m *models.Models)
	// OnShadow is called by Poll, after it has loaded the version to evaluate in
	// shadow, with the version and its models, or with 0 and nil when the evaluation
	// stopped (nil: nothing to tell).
	OnShadow func(version int, m *models.Models)
	// Log is where Poll's problems go (default: none); Now the clock (default
	// time.Now).
	Log *slog.Logger
	Now func() time.Time
}

// Gates are what a promotion must pass.
type Gates struct {
	// MinOutcomes is how many retries with known outcomes both versions must be
	// scored on. Default 200.
	MinOutcomes int
	// CalibrationMargin is how far the candidate's expected calibration error may
	// be above the active's (0.02: two points of probability; 0: not at all).
	CalibrationMargin float64
	// Window is how far back the retries scored were received. Default 30 days.
	Window time.Duration
	// MaxOutcomes is how many of the latest retries are scored at most; MaxPerNamespace
	// how many of any one namespace's, so that no tenant's failures, whose outcomes
	// its own code decides, outweigh the others'. Defaults 20000 and 2000.
	MaxOutcomes, MaxPerNamespace int
	// HistoryLimit is how many outcomes of its template each retry's history keeps,
	// as the service's decisions. Default 20.
	HistoryLimit int
}

// defaults fills the gates' zero fields.
func (g *Gates) defaults() {
	if g.MinOutcomes <= 0 {
		g.MinOutcomes = 200
	}
	g.CalibrationMargin = max(g.CalibrationMargin, 0)
	if g.Window <= 0 {
		g.Window = 30 * 24 * time.Hour
	}
	if g.MaxOutcomes <= 0 {
		g.MaxOutcomes = 20000
	}
	if g.MaxPerNamespace <= 0 {
		g.MaxPerNamespace = 2000
	}
	if g.HistoryLimit <= 0 {
		g.HistoryLimit = 20
	}
}

// Registry is the model registry of one ledger. It is safe for concurrent use.
type Registry struct {
	o   Options
	log *slog.Logger

	inUse  atomic.Pointer[InUse]
	shadow atomic.Pointer[InUse] // the version evaluated in shadow; nil: none
	// mu orders Poll's calls; failed is the active version last found not to load,
	// shadowFailed the version to evaluate in shadow.
	mu           sync.Mutex
	failed       int
	shadowFailed int
	// report is the latest shadow report ShadowReport made.
	reportMu sync.Mutex
	report   *ShadowReport
}

// InUse is the version of the models a process runs.
type InUse struct {
	// Version is the registry's (0: models not from the registry, the embedded
	// default before the first Poll).
	Version int
	Models  *models.Models
}

// New returns the registry of o.Ledger.
func New(o Options) (*Registry, error) {
	if o.Ledger == nil {
		return nil, errors.New("registry: Options.Ledger: required")
	}
	o.Gates.defaults()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Catalogue.GPUs == nil && o.Catalogue.CPUPerCoreHour == 0 {
		o.Catalogue = failure.DefaultCatalogue()
	}
	r := &Registry{o: o, log: o.Log}
	in := o.InUse
	if in == nil {
		var err error
		if in, err = models.Default(); err != nil {
			return nil, err
		}
	}
	r.inUse.Store(&InUse{Models: in})
	return r, nil
}

// CodeVersion is the VCS revision this binary was built from ("-dirty" added when
// its tree had changes), or "unknown".
func CodeVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// EnsureDefault registers the embedded default models as the first version, active,
// when the registry is empty, as actor; otherwise it does nothing. It returns the
// first version and whether it registered it.
func (r *Registry) EnsureDefault(ctx context.Context, actor string) (ledger.ModelVersion, bool, error) {
	data := models.DefaultArtifact()
	m, err := models.Load(data)
	if err != nil {
		return ledger.ModelVersion{}, false, fmt.Errorf("the embedded models: %w", err)
	}
	v := version(m, data)
	v.RegisteredBy, v.RegisteredAt = actor, r.o.Now()
	v.Note = "the models embedded in autofix, registered when the registry was empty"
	return r.o.Ledger.RegisterFirstModel(ctx, v)
}

// version describes the artifact data, whose models are m: its source and window
// are what its evaluation says it was trained on, its metrics its P(success) on
// the retries held out from its training.
func version(m *models.Models, data []byte) ledger.ModelVersion {
	v := ledger.ModelVersion{Name: m.Name, Source: ledger.SourceSimulator, CodeVersion: CodeVersion(), Content: data}
	if e := m.Evaluation; e != nil {
		v.Metrics = metrics(e.Success)
		if w := e.Window; w != nil {
			v.Source, v.DataFrom, v.DataTo = ledger.SourceLedger, w.TrainFrom.UTC(), w.TrainTo.UTC()
			if w.Simulated > 0 {
				v.Source = ledger.SourceMixed
			}
		}
	}
	return v
}

// metrics are c as the ledger keeps them.
func metrics(c models.Calibration) ledger.ModelMetrics {
	out := ledger.ModelMetrics{N: c.N, Positives: c.Positives, AUC: c.AUC, Brier: c.Brier, LogLoss: c.LogLoss, ECE: c.ECE(),
		Reliability: make([]ledger.ReliabilityBin, len(c.Reliability))}
	for i, b := range c.Reliability {
		if b.Hi == 0 { // a saved table's: its edges are not kept
			b.Lo, b.Hi = models.BinEdges(b.Predicted)
		}
		out.Reliability[i] = ledger.ReliabilityBin{Lo: b.Lo, Hi: min(b.Hi, 1), Count: b.Count, Predicted: b.Predicted, Observed: b.Observed}
	}
	return out
}

// Registration is who registers a version, and what it derives from.
type Registration struct {
	// Actor is who registers it (required).
	Actor string
	// Parent is the version it derives from; 0: the active one.
	Parent int
	// Note says what it is (optional).
	Note string
}

// Register adds the models artifact data as the next version. It must be models
// this autofix loads (models.Load), at most ledger.MaxModelContent bytes; its
// source, training window and metrics are what its evaluation says. Errors: a
// *ledger.ModelError naming the field (content: one that does not load), a
// *ledger.DuplicateModelError for content already registered, ledger.ErrNotFound
// for an unknown parent.
func (r *Registry) Register(ctx context.Context, data []byte, reg Registration) (ledger.ModelVersion, error) {
	if len(data) > ledger.MaxModelContent {
		return ledger.ModelVersion{}, &ledger.ModelError{Field: "content",
			Problem: fmt.Sprintf("%d bytes is over the %d-byte limit", len(data), ledger.MaxModelContent)}
	}
	m, err := models.Load(data)
	if err != nil {
		return ledger.ModelVersion{}, &ledger.ModelError{Field: "content", Problem: err.Error()}
	}
	if _, _, err := r.EnsureDefault(ctx, reg.Actor); err != nil {
		return ledger.ModelVersion{}, err
	}
	v := version(m, data)
	v.Parent, v.Note, v.RegisteredBy, v.RegisteredAt = reg.Parent, reg.Note, reg.Actor, r.o.Now()
	if v.Parent == 0 {
		if v.Parent, err = r.o.Ledger.ActiveModel(ctx); err != nil {
			return ledger.ModelVersion{}, err
		}
	}
	return r.o.Ledger.RegisterModel(ctx, v)
}

// List returns the latest limit versions, newest first, without their content, and
// the active version.
func (r *Registry) List(ctx context.Context, limit int) ([]ledger.ModelVersion, int, error) {
	list, err := r.o.Ledger.Models(ctx, limit)
	if err != nil {
		return nil, 0, err
	}
	active, err := r.o.Ledger.ActiveModel(ctx)
	return list, active, err
}

// Get returns a version with its content; ledger.ErrNotFound if there is none.
func (r *Registry) Get(ctx context.Context, version int) (ledger.ModelVersion, error) {
	return r.o.Ledger.Model(ctx, version)
}

// Promotions returns the latest limit promotions, newest first.
func (r *Registry) Promotions(ctx context.Context, limit int) ([]ledger.ModelPromotion, error) {
	return r.o.Ledger.ModelPromotions(ctx, limit)
}

// InUse returns the models this process runs, and their version.
func (r *Registry) InUse() InUse { return *r.inUse.Load() }
