package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// modelAt is a version to register: content distinguishes it.
func modelAt(content string, parent int, at time.Time) ModelVersion {
	return ModelVersion{Parent: parent, Name: "ledger-" + content, Source: SourceLedger, DataFrom: t0, DataTo: t0.Add(time.Hour),
		CodeVersion: "abc123", RegisteredBy: "ada", RegisteredAt: at, Note: "trained on march",
		Metrics: ModelMetrics{N: 40, Positives: 30, AUC: 0.8, Brier: 0.12, LogLoss: 0.4, ECE: 0.03,
			Reliability: []ReliabilityBin{{Lo: 0.8, Hi: 0.9, Count: 40, Predicted: 0.85, Observed: 0.75}}},
		Content: []byte(`{"kind":"autofix-retry-models","name":"` + content + `"}`)}
}

// registryAudit is the registry's rows of the audit trail: action and detail.
func registryAudit(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	err := queryEach(context.Background(), s.r, "SELECT action, detail FROM audit WHERE event_id = '' AND action LIKE 'model-%' ORDER BY seq", nil,
		func(r *sql.Rows) error {
			var action, detail string
			err := r.Scan(&action, &detail)
			out = append(out, action+" "+detail)
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestModelRegistry: versions are numbered in order, kept as given with their hash,
// listed newest first without content; the first is active; duplicates and unknown
// parents are refused; every registration is audited.
func TestModelRegistry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if v, err := s.ActiveModel(ctx); err != nil || v != 0 {
			t.Fatalf("ActiveModel of an empty registry = %d, %v; want 0, nil", v, err)
		}
		first := modelAt("a", 0, t0)
		first.Source, first.DataFrom, first.DataTo = SourceSimulator, time.Time{}, time.Time{}
		got1, err := s.RegisterModel(ctx, first)
		if err != nil {
			t.Fatalf("RegisterModel(first) = %v", err)
		}
		sum := sha256.Sum256(first.Content)
		if got1.Version != 1 || got1.SHA256 != hex.EncodeToString(sum[:]) || got1.Size != len(first.Content) {
			t.Errorf("first version %d sha256 %s size %d; want 1, %x, %d", got1.Version, got1.SHA256, got1.Size, sum, len(first.Content))
		}
		if v, err := s.ActiveModel(ctx); err != nil || v != 1 {
			t.Errorf("ActiveModel after the first registration = %d, %v; want 1", v, err)
		}
		second := modelAt("b", 1, t0.Add(time.Minute))
		got2, err := s.RegisterModel(ctx, second)
		if err != nil || got2.Version != 2 {
			t.Fatalf("RegisterModel(second) = %d, %v; want version 2", got2.Version, err)
		}
		if v, _ := s.ActiveModel(ctx); v != 1 {
			t.Errorf("ActiveModel after a second registration = %d, want 1 still", v)
		}

		read, err := s.Model(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		want := second
		want.Version, want.Size, want.SHA256, want.RegisteredAt = 2, got2.Size, got2.SHA256, second.RegisteredAt.UTC()
		if !reflect.DeepEqual(read, want) {
			t.Errorf("Model(2) =\n%+v\nwant\n%+v", read, want)
		}
		list, err := s.Models(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Version != 2 || list[1].Version != 1 || list[0].Content != nil {
			t.Errorf("Models(10) = %+v; want versions 2, 1 without content", list)
		}
		if list, _ := s.Models(ctx, 1); len(list) != 1 || list[0].Version != 2 {
			t.Errorf("Models(1) = %+v; want version 2 alone", list)
		}

		dup := modelAt("b", 0, t0)
		_, err = s.RegisterModel(ctx, dup)
		var de *DuplicateModelError
		if !errors.As(err, &de) || de.Version != 2 || !errors.Is(err, ErrConflict) {
			t.Errorf("RegisterModel(the second's content again) = %v; want a DuplicateModelError of version 2, a conflict", err)
		}
		if _, err := s.RegisterModel(ctx, modelAt("c", 7, t0)); !errors.Is(err, ErrNotFound) {
			t.Errorf("RegisterModel(parent 7) = %v; want ErrNotFound", err)
		}
		if _, err := s.Model(ctx, 9); !errors.Is(err, ErrNotFound) {
			t.Errorf("Model(9) = %v; want ErrNotFound", err)
		}
		if v, registered, err := s.RegisterFirstModel(ctx, modelAt("d", 0, t0)); err != nil || registered || v.Version != 1 {
			t.Errorf("RegisterFirstModel on a registry with versions = %d, %v, %v; want version 1, false, nil", v.Version, registered, err)
		}
		audit := registryAudit(t, s)
		wantAudit := []string{
			"model-register version 1 (ledger-a), parent 0, sha256 " + got1.SHA256,
			"model-activate model version 0 -> 1; reason: the first version registered",
			"model-register version 2 (ledger-b), parent 1, sha256 " + got2.SHA256,
		}
		if !reflect.DeepEqual(audit, wantAudit) {
			t.Errorf("the registry's audit rows:\n%q\nwant\n%q", audit, wantAudit)
		}
	})
}

// TestRegisterModelRefuses names the field of a version that can never be recorded.
func TestRegisterModelRefuses(t *testing.T) {
	s := openTest(t, t.TempDir()+"/ledger.db")
	for _, tc := range []struct {
		name  string
		edit  func(v *ModelVersion)
		field string
	}{
		{"no name", func(v *ModelVersion) { v.Name = " " }, "name"},
		{"a bad source", func(v *ModelVersion) { v.Source = "guess" }, "source"},
		{"a negative parent", func(v *ModelVersion) { v.Parent = -1 }, "parent"},
		{"no actor", func(v *ModelVersion) { v.RegisteredBy = "" }, "registeredBy"},
		{"an actor with a newline", func(v *ModelVersion) { v.RegisteredBy = "ada\nroot" }, "registeredBy"},
		{"no content", func(v *ModelVersion) { v.Content = nil }, "content"},
		{"too much content", func(v *ModelVersion) { v.Content = []byte(strings.Repeat("x", MaxModelContent+1)) }, "content"},
		{"a NUL byte", func(v *ModelVersion) { v.Content = []byte("{\x00}") }, "content"},
		{"invalid UTF-8", func(v *ModelVersion) { v.Content = []byte("{\xff}") }, "content"},
		{"a simulator's window", func(v *ModelVersion) { v.Source = SourceSimulator }, "dataFrom"},
		{"a window backwards", func(v *ModelVersion) { v.DataFrom, v.DataTo = v.DataTo, v.DataFrom }, "dataTo"},
		{"a long note", func(v *ModelVersion) { v.Note = strings.Repeat("n", MaxCorrectionNote+1) }, "note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := modelAt("x", 0, t0)
			tc.edit(&v)
			_, err := s.RegisterModel(context.Background(), v)
			var me *ModelError
			if !errors.As(err, &me) || me.Field != tc.field {
				t.Errorf("RegisterModel = %v; want a ModelError of field %s", err, tc.field)
			}
		})
	}
	if list, err := s.Models(context.Background(), 10); err != nil || len(list) != 0 {
		t.Errorf("Models after refusals = %d versions, %v; want none", len(list), err)
	}
}

// passed are gates that passed.
func passed() *ModelGates {
	return &ModelGates{Since: t0, Until: t0.Add(time.Hour), Outcomes: 500, MinOutcomes: 200, CalibrationMargin: 0.02,
		Active: ModelMetrics{N: 500, LogLoss: 0.4, ECE: 0.03}, Candidate: ModelMetrics{N: 500, LogLoss: 0.35, ECE: 0.02}, Failed: []string{}}
}

// TestPromoteModel: a promotion moves the active version from the one it names, is
// refused when another moved it first, keeps its gates, and is audited; forcing and
// rolling back need a reason, a plain promotion gates that passed.
func TestPromoteModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, c := range []string{"a", "b", "c"} {
			if _, err := s.RegisterModel(ctx, modelAt(c, 0, t0)); err != nil {
				t.Fatal(err)
			}
		}
		failed := passed()
		failed.Failed = []string{"log-loss 0.41 is not below the active's 0.40"}
		for _, tc := range []struct {
			name  string
			p     ModelPromotion
			field string
		}{
			{"a promotion past failed gates", ModelPromotion{From: 1, To: 2, Action: ModelPromote, Actor: "ada", Gates: failed}, "gates"},
			{"no gates", ModelPromotion{From: 1, To: 2, Action: ModelPromote, Actor: "ada"}, "gates"},
			{"force without a reason", ModelPromotion{From: 1, To: 2, Action: ModelForce, Actor: "ada", Gates: failed}, "reason"},
			{"rollback without a reason", ModelPromotion{From: 1, To: 2, Action: ModelRollback, Actor: "ada", Gates: failed, Reason: " "}, "reason"},
			{"activate", ModelPromotion{From: 1, To: 2, Action: ModelActivate, Actor: "ada", Gates: passed()}, "action"},
			{"no actor", ModelPromotion{From: 1, To: 2, Action: ModelPromote, Gates: passed()}, "actor"},
		} {
			_, err := s.PromoteModel(ctx, tc.p)
			var me *ModelError
			if !errors.As(err, &me) || me.Field != tc.field {
				t.Errorf("%s: PromoteModel = %v; want a ModelError of field %s", tc.name, err, tc.field)
			}
		}

		p, err := s.PromoteModel(ctx, ModelPromotion{From: 1, To: 3, Action: ModelPromote, Actor: "ada", Gates: passed(), At: t0.Add(time.Hour)})
		if err != nil {
			t.Fatalf("PromoteModel(1 -> 3) = %v", err)
		}
		if p.Seq != 2 {
			t.Errorf("the promotion's seq = %d, want 2 (after the first version's activation)", p.Seq)
		}
		if v, _ := s.ActiveModel(ctx); v != 3 {
			t.Errorf("ActiveModel = %d after promoting 3", v)
		}
		for _, tc := range []struct {
			name string
			p    ModelPromotion
			want error
		}{
			{"from a version no longer active", ModelPromotion{From: 1, To: 2, Action: ModelPromote, Actor: "val", Gates: passed()}, ErrConflict},
			{"to the active version", ModelPromotion{From: 3, To: 3, Action: ModelPromote, Actor: "val", Gates: passed()}, ErrConflict},
			{"to a version not registered", ModelPromotion{From: 3, To: 9, Action: ModelPromote, Actor: "val", Gates: passed()}, ErrNotFound},
		} {
			if _, err := s.PromoteModel(ctx, tc.p); !errors.Is(err, tc.want) {
				t.Errorf("%s: PromoteModel = %v; want %v", tc.name, err, tc.want)
			}
		}
		if _, err := s.PromoteModel(ctx, ModelPromotion{From: 3, To: 1, Action: ModelRollback, Actor: "val", Reason: "3 over-retries",
			Gates: failed, At: t0.Add(2 * time.Hour)}); err != nil {
			t.Fatalf("PromoteModel(rollback 3 -> 1) = %v", err)
		}
		list, err := s.ModelPromotions(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range list {
			got = append(got, p.Actor+" "+string(p.Action)+" "+p.Reason)
		}
		want := []string{"val rollback 3 over-retries", "ada promote ", "ada activate the first version registered"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ModelPromotions = %q, want %q", got, want)
		}
		if !reflect.DeepEqual(list[0].Gates, failed) || list[2].Gates != nil || !list[0].At.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("the rollback's gates %+v at %v, the activation's %+v; want the rollback's as given, at its time, the activation's nil",
				list[0].Gates, list[0].At, list[2].Gates)
		}
		audit := registryAudit(t, s)
		wantLast := "model-rollback model version 3 -> 1; on 500 outcomes, log-loss 0.4000 -> 0.3500, ECE 0.0300 -> 0.0200, " +
			"gates failed: log-loss 0.41 is not below the active's 0.40; reason: 3 over-retries"
		if len(audit) == 0 || audit[len(audit)-1] != wantLast {
			t.Errorf("the last audit row of the registry: %q, want %q", audit[len(audit)-1:], wantLast)
		}
	})
}

// TestConcurrentPromotions: of replicas promoting from the same active version at
// once, one wins and the others are told of the conflict; of replicas registering a
// first version on an empty ledger, one registers it.
func TestConcurrentPromotions(t *testing.T) {
	forEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		ctx := context.Background()
		stores := []*Store{openTest(t, dsn), openTest(t, dsn), openTest(t, dsn)}
		var wg sync.WaitGroup
		registered := make([]bool, len(stores))
		errs := make([]error, len(stores))
		for i, s := range stores {
			wg.Go(func() {
				errs[i] = retryBusy(t, func() error {
					var err error
					_, registered[i], err = s.RegisterFirstModel(ctx, modelAt("first", 0, t0))
					return err
				})
			})
		}
		wg.Wait()
		n := 0
		for i := range stores {
			if errs[i] != nil {
				t.Fatalf("RegisterFirstModel on replica %d = %v", i, errs[i])
			}
			if registered[i] {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d replicas registered the first version, want 1", n)
		}
		for _, c := range []string{"b", "c", "d"} {
			if _, err := stores[0].RegisterModel(ctx, modelAt(c, 1, t0)); err != nil {
				t.Fatal(err)
			}
		}
		for i, s := range stores {
			wg.Go(func() {
				errs[i] = retryBusy(t, func() error {
					_, err := s.PromoteModel(ctx, ModelPromotion{From: 1, To: 2 + i, Action: ModelPromote, Actor: "ada", Gates: passed()})
					return err
				})
			})
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrConflict):
				t.Errorf("replica %d: PromoteModel = %v; want nil or a conflict", i, err)
			}
		}
		if won != 1 {
			t.Errorf("%d promotions from version 1 won, want 1", won)
		}
		if list, _ := stores[0].ModelPromotions(ctx, 10); len(list) != 2 {
			t.Errorf("%d promotions recorded, want 2 (the activation and one promotion)", len(list))
		}
	})
}
