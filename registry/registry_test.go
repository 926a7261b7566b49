package registry

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// TestRegisterDescribesTheArtifact: the embedded default becomes version 1, active,
// when the first version is registered; a version's source, training window and
// metrics are what its artifact's evaluation says, its parent the active version,
// its code this binary's; what does not load is refused, naming the content.
func TestRegisterDescribesTheArtifact(t *testing.T) {
	ctx := context.Background()
	store := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	r := newRegistry(t, store, Gates{})
	from, to := t0, t0.Add(48*time.Hour)
	data := artifact(t, func(m *models.Models) {
		m.Name = "ledger-mixed"
		m.Evaluation.Window = &models.Window{TrainFrom: from, TrainTo: to, TestFrom: to.Add(time.Hour), TestTo: to.Add(2 * time.Hour), Simulated: 10}
	})
	v, err := r.Register(ctx, data, Registration{Actor: "ada", Note: "march"})
	if err != nil {
		t.Fatalf("Register = %v", err)
	}
	def, _ := models.Default()
	want := ledger.ModelVersion{Version: 2, Parent: 1, Name: "ledger-mixed", Source: ledger.SourceMixed, DataFrom: from, DataTo: to,
		CodeVersion: CodeVersion(), Metrics: metrics(def.Evaluation.Success), Note: "march", RegisteredBy: "ada", RegisteredAt: now}
	got := v
	got.Size, got.SHA256, got.Content = 0, "", nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Register =\n%+v\nwant\n%+v", got, want)
	}
	if v.Metrics.N == 0 || len(v.Metrics.Reliability) == 0 || v.Metrics.ECE == 0 {
		t.Errorf("metrics %+v: want the default's held-out figures, with a reliability table and an ECE", v.Metrics)
	}
	list, active, err := r.List(ctx, 10)
	if err != nil || active != 1 || len(list) != 2 || list[1].Name != def.Name || list[1].Source != ledger.SourceSimulator ||
		list[1].RegisteredBy != "ada" {
		t.Errorf("List = %+v, active %d, %v; want version 2 and the embedded default as version 1 (active), registered by ada", list, active, err)
	}

	for _, tc := range []struct {
		name, content string
	}{
		{"not JSON", "weights"},
		{"another kind", `{"kind":"autofix-classifier-model"}`},
		{"a newer format", `{"kind":"autofix-retry-models","version":3}`},
	} {
		_, err := r.Register(ctx, []byte(tc.content), Registration{Actor: "ada"})
		var me *ledger.ModelError
		if !errors.As(err, &me) || me.Field != "content" {
			t.Errorf("Register(%s) = %v; want a ModelError of field content", tc.name, err)
		}
	}
	if _, err := r.Register(ctx, make([]byte, ledger.MaxModelContent+1), Registration{Actor: "ada"}); err == nil ||
		!strings.Contains(err.Error(), "limit") {
		t.Errorf("Register(too large) = %v; want the size limit", err)
	}
	var dup *ledger.DuplicateModelError
	if _, err := r.Register(ctx, data, Registration{Actor: "val"}); !errors.As(err, &dup) || dup.Version != 2 {
		t.Errorf("Register(version 2's artifact again) = %v; want a DuplicateModelError of version 2", err)
	}
}

// TestPromoteBehindGates: models that know nothing (a constant P(success)) fail the
// gates against the embedded default on the recorded retries and are not promoted,
// unless forced with a reason; the default then passes them against those, as a
// promotion of the older version.
func TestPromoteBehindGates(t *testing.T) {
	ctx := context.Background()
	store := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	fill(t, store, plan(300))
	r := newRegistry(t, store, Gates{MinOutcomes: 100})
	v, err := r.Register(ctx, constant(t, 2), Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	_, ev, err := r.Promote(ctx, v.Version, Promotion{Actor: "ada"})
	var ge *GatesError
	if !errors.As(err, &ge) || !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("Promote(constant) = %v; want a GatesError, a conflict", err)
	}
	g := ev.Gates
	t.Logf("on %d outcomes: log-loss %.4f (default) vs %.4f (constant), ECE %.4f vs %.4f; failed: %q",
		g.Outcomes, g.Active.LogLoss, g.Candidate.LogLoss, g.Active.ECE, g.Candidate.ECE, g.Failed)
	if g.Outcomes != 300 || g.Active.N != 300 || g.Candidate.N != 300 || !g.Since.Equal(now.Add(-30*24*time.Hour)) || !g.Until.Equal(now) {
		t.Errorf("scored %d outcomes (%d, %d) from %v to %v; want all 300 by both, over the 30 days to now", g.Outcomes, g.Active.N,
			g.Candidate.N, g.Since, g.Until)
	}
	if len(g.Failed) != 2 || !strings.HasPrefix(g.Failed[0], "calibration: ECE") || !strings.HasPrefix(g.Failed[1], "log-loss") {
		t.Errorf("failed gates %q; want calibration and log-loss", g.Failed)
	}
	if a, _ := store.ActiveModel(ctx); a != 1 {
		t.Errorf("active version %d after a refused promotion, want 1", a)
	}
	var me *ledger.ModelError
	if _, _, err := r.Promote(ctx, v.Version, Promotion{Actor: "ada", Force: true}); !errors.As(err, &me) || me.Field != "reason" {
		t.Errorf("Promote(force, no reason) = %v; want a ModelError of field reason", err)
	}
	p, _, err := r.Promote(ctx, v.Version, Promotion{Actor: "ada", Force: true, Reason: "trying it on a quiet weekend"})
	if err != nil {
		t.Fatalf("Promote(force) = %v", err)
	}
	if p.Action != ledger.ModelForce || p.From != 1 || p.To != 2 || p.Gates == nil || !reflect.DeepEqual(p.Gates.Failed, g.Failed) {
		t.Errorf("forced promotion %+v; want force, 1 -> 2, with the failed gates", p)
	}

	back, ev, err := r.Promote(ctx, 1, Promotion{Actor: "val"})
	if err != nil {
		t.Fatalf("Promote(the default, older) = %v; gates %+v", err, ev.Gates)
	}
	if back.Action != ledger.ModelPromote || back.From != 2 || back.To != 1 || !back.Gates.Passed() {
		t.Errorf("promotion of the default %+v; want promote, 2 -> 1, gates passed", back)
	}
	if _, _, err := r.Promote(ctx, 1, Promotion{Actor: "val"}); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("Promote(the active version) = %v; want a conflict", err)
	}
	if _, _, err := r.Promote(ctx, 9, Promotion{Actor: "val"}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Promote(9) = %v; want ErrNotFound", err)
	}
	list, err := r.Promotions(ctx, 10)
	if err != nil || len(list) != 3 {
		t.Fatalf("Promotions = %d, %v; want the activation and two promotions", len(list), err)
	}
}

// TestGatesWindow: retries a version was trained on are not scored, nor those before
// the window; the namespace's and the overall caps keep the latest; too few
// outcomes fail a gate.
func TestGatesWindow(t *testing.T) {
	ctx := context.Background()
	store := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	retries := plan(200)
	fill(t, store, retries)
	trainedTo := retries[119].at
	candidate := artifact(t, func(m *models.Models) {
		m.Name = "ledger"
		m.Evaluation.Window = &models.Window{TrainFrom: t0, TrainTo: trainedTo, TestFrom: retries[120].at, TestTo: retries[199].at}
	})
	for _, tc := range []struct {
		name      string
		gates     Gates
		since     time.Time
		outcomes  int
		minFailed bool
	}{
		{"after the training data", Gates{MinOutcomes: 10}, trainedTo.Add(time.Nanosecond), 80, false},
		{"a window shorter than that", Gates{MinOutcomes: 10, Window: now.Sub(retries[150].at)}, retries[150].at, 50, false},
		// The 80 retries after the training data: 20 in team-a, 60 in team-b.
		{"at most 30 of a namespace", Gates{MinOutcomes: 10, MaxPerNamespace: 30}, trainedTo.Add(time.Nanosecond), 50, false},
		{"at most 40", Gates{MinOutcomes: 10, MaxOutcomes: 40}, trainedTo.Add(time.Nanosecond), 40, false},
		{"too few", Gates{MinOutcomes: 81}, trainedTo.Add(time.Nanosecond), 80, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRegistry(t, store, tc.gates)
			v, err := r.Register(ctx, candidate, Registration{Actor: "ada"})
			var dup *ledger.DuplicateModelError
			if errors.As(err, &dup) {
				v.Version, err = dup.Version, nil
			}
			if err != nil {
				t.Fatal(err)
			}
			ev, err := r.Evaluate(ctx, v.Version)
			if err != nil {
				t.Fatalf("Evaluate = %v", err)
			}
			g := ev.Gates
			if !g.Since.Equal(tc.since) || g.Outcomes != tc.outcomes {
				t.Errorf("scored %d outcomes since %v; want %d since %v", g.Outcomes, g.Since, tc.outcomes, tc.since)
			}
			failed := len(g.Failed) > 0 && strings.Contains(g.Failed[0], "fewer than the")
			if failed != tc.minFailed {
				t.Errorf("failed gates %q; want the outcomes' failed: %v", g.Failed, tc.minFailed)
			}
		})
	}
}

// TestRollback goes to an earlier version with a reason, past the gates, and
// records their figures.
func TestRollback(t *testing.T) {
	ctx := context.Background()
	store := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	fill(t, store, plan(60))
	r := newRegistry(t, store, Gates{MinOutcomes: 10})
	v, err := r.Register(ctx, constant(t, 1), Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Promote(ctx, v.Version, Promotion{Actor: "ada", Force: true, Reason: "a test"}); err != nil {
		t.Fatal(err)
	}
	var me *ledger.ModelError
	for _, tc := range []struct {
		name    string
		version int
		p       Promotion
		field   string
	}{
		{"without a reason", 1, Promotion{Actor: "val"}, "reason"},
		{"to the active version", 2, Promotion{Actor: "val", Reason: "r"}, "version"},
		{"to a later version", 3, Promotion{Actor: "val", Reason: "r"}, "version"},
		{"without an actor", 1, Promotion{Reason: "r"}, "actor"},
	} {
		if _, _, err := r.Rollback(ctx, tc.version, tc.p); !errors.As(err, &me) || me.Field != tc.field {
			t.Errorf("Rollback %s = %v; want a ModelError of field %s", tc.name, err, tc.field)
		}
	}
	p, ev, err := r.Rollback(ctx, 1, Promotion{Actor: "val", Reason: "version 2 retries everything at the same size"})
	if err != nil {
		t.Fatalf("Rollback(1) = %v", err)
	}
	if p.Action != ledger.ModelRollback || p.From != 2 || p.To != 1 || p.Gates == nil || p.Gates.Outcomes != 60 || ev.Gates.Outcomes != 60 {
		t.Errorf("rollback %+v; want rollback 2 -> 1 with the figures of 60 outcomes", p)
	}
}

// TestReplicasFollowTheActiveVersion: two replicas on one SQLite ledger file; what
// one promotes, the other runs after its next poll; a version that does not load is
// reported once and the models in use are kept until another version is active.
func TestReplicasFollowTheActiveVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	a := newRegistry(t, openLedger(t, path), Gates{MinOutcomes: 1})
	storeB := openLedger(t, path)
	var changes []string
	b, err := New(Options{Ledger: storeB, OnChange: func(v int, m *models.Models) { changes = append(changes, m.Name) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Poll(ctx); err != nil || b.InUse().Version != 0 || len(changes) != 0 {
		t.Fatalf("Poll of an empty registry = %v, version %d, changes %q; want nothing", err, b.InUse().Version, changes)
	}
	if _, _, err := a.EnsureDefault(ctx, "autofix"); err != nil {
		t.Fatal(err)
	}
	v, err := a.Register(ctx, constant(t, 1), Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Promote(ctx, v.Version, Promotion{Actor: "ada", Force: true, Reason: "no outcomes yet"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if in := b.InUse(); in.Version != 2 || in.Models.Name != "constant-1" || !reflect.DeepEqual(changes, []string{"constant-1"}) {
		t.Errorf("replica b runs version %d (%s), changes %q; want 2 (constant-1), told once", in.Version, in.Models.Name, changes)
	}

	// A version this autofix cannot load, made active behind the registry's back (a
	// newer autofix registered it).
	newer, err := storeB.RegisterModel(ctx, ledger.ModelVersion{Name: "v3-format", Source: ledger.SourceSimulator, RegisteredBy: "ci",
		Content: []byte(`{"kind":"autofix-retry-models","version":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	var le *LoadError
	if _, _, err := a.Promote(ctx, newer.Version, Promotion{Actor: "ada", Force: true, Reason: "r"}); !errors.As(err, &le) ||
		!errors.Is(err, ledger.ErrConflict) {
		t.Errorf("Promote(a version that does not load) = %v; want a LoadError, a conflict", err)
	}
	gates := &ledger.ModelGates{Failed: []string{"not scored"}}
	if _, err := storeB.PromoteModel(ctx, ledger.ModelPromotion{From: 2, To: newer.Version, Action: ledger.ModelForce, Actor: "ci",
		Reason: "newer", Gates: gates}); err != nil {
		t.Fatal(err)
	}
	if err := b.Poll(ctx); !errors.As(err, &le) || le.Version != newer.Version {
		t.Errorf("Poll with an active version that does not load = %v; want a LoadError of version %d", err, newer.Version)
	}
	if err := b.Poll(ctx); err != nil {
		t.Errorf("the second Poll of the same version = %v; want it reported once", err)
	}
	if in := b.InUse(); in.Version != 2 || len(changes) != 1 {
		t.Errorf("replica b runs version %d, changes %q; want version 2 kept", in.Version, changes)
	}
	if _, _, err := a.Rollback(ctx, 1, Promotion{Actor: "ada", Reason: "back to the default"}); err != nil {
		t.Fatal(err)
	}
	def, _ := models.Default()
	if err := b.Poll(ctx); err != nil || b.InUse().Version != 1 || changes[len(changes)-1] != def.Name {
		t.Errorf("after a rollback to 1: Poll = %v, version %d, changes %q; want version 1, the default", err, b.InUse().Version, changes)
	}
}
