package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PipelineRun is a pipeline run started through the service.
type PipelineRun struct {
	Pipeline, Run, Namespace string
	// Definition is the pipeline definition (JSON) the run was started with.
	Definition []byte
	// Phase is "running", "succeeded" or "failed"; Message says how it ended.
	Phase, Message string
	CreatedBy      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// CreatePipelineRun records a new run; a run of that pipeline with that id that
// exists already fails with an error wrapping ErrConflict.
func (s *Store) CreatePipelineRun(ctx context.Context, r PipelineRun) error {
	at := atOrNow(r.CreatedAt)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO pipeline_runs
			(pipeline, run, namespace, definition, phase, message, created_by, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pipeline, run) DO NOTHING`),
			r.Pipeline, r.Run, r.Namespace, string(r.Definition), r.Phase, text(r.Message), r.CreatedBy, nanos(at), nanos(at))
		if err != nil {
			return fmt.Errorf("create pipeline run: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("pipeline %s run %s exists: %w", r.Pipeline, r.Run, ErrConflict)
		}
		return s.addAudit(ctx, tx, "", at, r.CreatedBy, "pipeline-run", "", "", r.Pipeline+"/"+r.Run)
	})
}

// FinishPipelineRun records how a running run ended; a run that has ended already (or
// does not exist) is ErrNotFound.
func (s *Store) FinishPipelineRun(ctx context.Context, pipeline, run, phase, message string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE pipeline_runs SET phase = ?, message = ?, updated_at = ?
		WHERE pipeline = ? AND run = ? AND phase = 'running'`), phase, text(message), nanos(atOrNow(at)), pipeline, run)
	if err != nil {
		return fmt.Errorf("finish pipeline run: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("pipeline %s run %s: %w", pipeline, run, ErrNotFound)
	}
	return nil
}

// PipelineRun returns one run.
func (s *Store) PipelineRun(ctx context.Context, pipeline, run string) (PipelineRun, error) {
	runs, err := s.pipelineRuns(ctx, "WHERE pipeline = ? AND run = ?", pipeline, run)
	if err != nil {
		return PipelineRun{}, err
	}
	if len(runs) == 0 {
		return PipelineRun{}, fmt.Errorf("pipeline %s run %s: %w", pipeline, run, ErrNotFound)
	}
	return runs[0], nil
}

// PipelineRuns returns the runs, newest first; with running, only those not ended.
func (s *Store) PipelineRuns(ctx context.Context, running bool, limit int) ([]PipelineRun, error) {
	if limit <= 0 || limit > maxPage {
		limit = maxPage
	}
	if running {
		return s.pipelineRuns(ctx, "WHERE phase = 'running' ORDER BY created_at DESC LIMIT ?", limit)
	}
	return s.pipelineRuns(ctx, "ORDER BY created_at DESC LIMIT ?", limit)
}

func (s *Store) pipelineRuns(ctx context.Context, where string, args ...any) ([]PipelineRun, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT pipeline, run, namespace, definition, phase, message, created_by,
		created_at, updated_at FROM pipeline_runs `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("pipeline runs: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []PipelineRun
	for rows.Next() {
		var r PipelineRun
		var def string
		var created, updated int64
		if err := rows.Scan(&r.Pipeline, &r.Run, &r.Namespace, &def, &r.Phase, &r.Message, &r.CreatedBy, &created, &updated); err != nil {
			return nil, fmt.Errorf("pipeline runs: %w", err)
		}
		r.Definition, r.CreatedAt, r.UpdatedAt = []byte(def), fromNanos(created), fromNanos(updated)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pipeline runs: %w", err)
	}
	return out, nil
}
