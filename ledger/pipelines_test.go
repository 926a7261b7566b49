package ledger

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPipelineRunsAndPauseState(t *testing.T) {
	forEachDSN(t, func(t testing.TB, dsn string) {
		s := openTest(t, dsn)
		ctx := context.Background()
		at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
		run := PipelineRun{Pipeline: "resnet50", Run: "r1", Namespace: "ml", Definition: []byte(`{"name":"resnet50"}`),
			Phase: "running", CreatedBy: "alice", CreatedAt: at}
		if err := s.CreatePipelineRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		if err := s.CreatePipelineRun(ctx, run); !errors.Is(err, ErrConflict) {
			t.Errorf("the same run again: %v, want ErrConflict", err)
		}
		run2 := run
		run2.Run, run2.CreatedAt = "r2", at.Add(time.Minute)
		if err := s.CreatePipelineRun(ctx, run2); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishPipelineRun(ctx, "resnet50", "r1", "succeeded", "deployed", at.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishPipelineRun(ctx, "resnet50", "nope", "failed", "", at); !errors.Is(err, ErrNotFound) {
			t.Errorf("finishing a run that does not exist: %v, want ErrNotFound", err)
		}
		got, err := s.PipelineRun(ctx, "resnet50", "r1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Phase != "succeeded" || got.Message != "deployed" || string(got.Definition) != `{"name":"resnet50"}` ||
			!got.CreatedAt.Equal(at) || !got.UpdatedAt.Equal(at.Add(time.Hour)) || got.CreatedBy != "alice" {
			t.Errorf("run r1: %+v", got)
		}
		all, err := s.PipelineRuns(ctx, false, 0)
		if err != nil || len(all) != 2 || all[0].Run != "r2" {
			t.Errorf("all runs: %+v, %v; want r2 then r1", all, err)
		}
		running, err := s.PipelineRuns(ctx, true, 0)
		if err != nil || len(running) != 1 || running[0].Run != "r2" {
			t.Errorf("running runs: %+v, %v; want r2", running, err)
		}

		p, err := s.PauseState(ctx)
		if err != nil || p.Paused {
			t.Fatalf("pause state at first: %+v, %v", p, err)
		}
		if err := s.SetPaused(ctx, true, "bob", "bad rollout", at); err != nil {
			t.Fatal(err)
		}
		p, err = s.PauseState(ctx)
		if err != nil || !p.Paused || p.Actor != "bob" || p.Reason != "bad rollout" || !p.At.Equal(at) {
			t.Errorf("pause state: %+v, %v", p, err)
		}
	})
}

// TestSettingsAuditUnderConcurrency: audit rows of no event (pauses, pipeline runs)
// written at once by many writers never collide on their sequence number.
func TestSettingsAuditUnderConcurrency(t *testing.T) {
	forEachDSN(t, func(t testing.TB, dsn string) {
		s := openTest(t, dsn)
		ctx := context.Background()
		errs := make(chan error, 40)
		for i := range 20 {
			go func() { errs <- s.SetPaused(ctx, i%2 == 0, "ops", "drill", time.Time{}) }()
			go func() {
				errs <- s.CreatePipelineRun(ctx, PipelineRun{Pipeline: "p", Run: fmt.Sprintf("r%d", i), Namespace: "ml",
					Definition: []byte("{}"), Phase: "running", CreatedBy: "ops"})
			}()
		}
		for range 40 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
}
