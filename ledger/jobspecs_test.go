package ledger

import (
	"context"
	"testing"
	"time"
)

func TestJobSpecsAreKeptAWeek(t *testing.T) {
	forEachDSN(t, func(t testing.TB, dsn string) {
		s := openTest(t, dsn)
		ctx := context.Background()
		at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		if err := s.KeepJobSpec(ctx, "uid-old", "ml", "old", []byte(`{"v":1}`), at); err != nil {
			t.Fatal(err)
		}
		if err := s.KeepJobSpec(ctx, "uid-a", "ml", "train", []byte(`{"v":1}`), at.Add(6*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// Another Job of the same name: its own row.
		if err := s.KeepJobSpec(ctx, "uid-b", "ml", "train", []byte(`{"v":2}`), at.Add(8*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		now := at.Add(8 * 24 * time.Hour)
		if b, err := s.JobSpec(ctx, "uid-a", now); err != nil || string(b) != `{"v":1}` {
			t.Errorf("uid-a: %s, %v; want its own spec", b, err)
		}
		if b, err := s.JobSpec(ctx, "uid-b", now); err != nil || string(b) != `{"v":2}` {
			t.Errorf("uid-b: %s, %v", b, err)
		}
		if b, err := s.JobSpec(ctx, "uid-old", now); err != nil || b != nil {
			t.Errorf("a spec older than a week: %s, %v; want it gone", b, err)
		}
		if b, err := s.JobSpec(ctx, "uid-a", at.Add(14*24*time.Hour)); err != nil || b != nil {
			t.Errorf("a spec read after its week: %s, %v; want none", b, err)
		}
	})
}
