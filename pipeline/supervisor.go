package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/autofix/autofix/ledger"
)

// RunStore records pipeline runs: the ledger.
type RunStore interface {
	CreatePipelineRun(ctx context.Context, r ledger.PipelineRun) error
	PipelineRun(ctx context.Context, pipeline, run string) (ledger.PipelineRun, error)
	PipelineRuns(ctx context.Context, running bool, limit int) ([]ledger.PipelineRun, error)
	FinishPipelineRun(ctx context.Context, pipeline, run, phase, message string, at time.Time) error
}

// Supervisor runs the pipeline runs started through the service, beside the
// engine's dispatcher on the leader. A run is recorded in the ledger with its
// definition first; the leader drives every run the ledger has
// as running (so a run started on any replica, or left running by a restart, is
// driven), and records how it ended. The stages themselves live in the cluster,
// found by their labels, so a restarted driver starts nothing twice.
type Supervisor struct {
	Runs RunStore
	// Driver acts on the cluster (its Observe must be false); Observer reads it.
	Driver   *Driver
	Observer *Driver
	// Poll is how often the leader looks for runs to drive (default 2 s).
	Poll time.Duration
	Log  *slog.Logger

	mu      sync.Mutex
	driving map[string]bool
	retry   map[string]time.Time // runs whose last drive failed, and when to try again
	backoff map[string]time.Duration
	// failingSince is when a run's drives began to fail.
	failingSince map[string]time.Time
	wake         chan struct{}
}

// Start records a new run of def.
func (p *Supervisor) Start(ctx context.Context, def *Definition, run, by string) (ledger.PipelineRun, error) {
	b, err := json.Marshal(def)
	if err != nil {
		return ledger.PipelineRun{}, err
	}
	now := time.Now()
	r := ledger.PipelineRun{Pipeline: def.Name, Run: run, Namespace: def.Namespace, Definition: b, Phase: string(Running),
		CreatedBy: by, CreatedAt: now, UpdatedAt: now}
	if err := p.Runs.CreatePipelineRun(ctx, r); err != nil {
		return r, err
	}
	p.nudge()
	return r, nil
}

func (p *Supervisor) nudge() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake != nil {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Run drives the running runs until ctx ends (on the leader).
func (p *Supervisor) Run(ctx context.Context) {
	p.mu.Lock()
	p.driving, p.wake = map[string]bool{}, make(chan struct{}, 1)
	p.retry, p.backoff, p.failingSince = map[string]time.Time{}, map[string]time.Duration{}, map[string]time.Time{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	poll := p.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	for {
		runs, err := p.Runs.PipelineRuns(ctx, true, 0)
		if err != nil && ctx.Err() == nil {
			p.Log.Warn("pipelines: list runs", "err", err)
		}
		for _, r := range runs {
			key := r.Pipeline + "/" + r.Run
			p.mu.Lock()
			busy := p.driving[key] || time.Now().Before(p.retry[key])
			if !busy {
				p.driving[key] = true
			}
			p.mu.Unlock()
			if !busy {
				wg.Go(func() { p.drive(ctx, r) })
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		case <-p.wake:
		}
	}
}

func (p *Supervisor) drive(ctx context.Context, r ledger.PipelineRun) {
	key := r.Pipeline + "/" + r.Run
	defer func() {
		p.mu.Lock()
		delete(p.driving, key)
		p.mu.Unlock()
	}()
	// The list this run came from may be older than its end (a drive that just
	// finished): look again.
	if cur, err := p.Runs.PipelineRun(ctx, r.Pipeline, r.Run); err != nil || cur.Phase != string(Running) {
		return
	}
	var def Definition
	err := json.Unmarshal(r.Definition, &def)
	if err == nil {
		err = def.Validate()
	}
	if err != nil {
		p.finish(r, Failed, "the recorded definition does not load: "+err.Error())
		return
	}
	p.Log.Info("driving pipeline run", "pipeline", r.Pipeline, "run", r.Run)
	st, err := p.Driver.Run(ctx, &def, r.Run)
	if ctx.Err() != nil {
		return // leadership lost or shutting down: the next leader resumes it
	}
	if err != nil {
		// The cluster or the ledger failing for a while is not the pipeline failing:
		// its stages run on. Try again later, backing off to 5 minutes — unless the
		// API server says the run's objects can never be made, or it has failed for an
		// hour.
		p.mu.Lock()
		if p.failingSince[key].IsZero() {
			p.failingSince[key] = time.Now()
		}
		since := p.failingSince[key]
		wait := min(max(2*p.backoff[key], 5*time.Second), 5*time.Minute)
		p.backoff[key], p.retry[key] = wait, time.Now().Add(wait)
		p.mu.Unlock()
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || time.Since(since) > giveUpAfter {
			p.forget(key)
			p.finish(r, Failed, "the run cannot go on: "+err.Error())
			return
		}
		p.Log.Warn("pipeline run: driving failed; trying again", "pipeline", r.Pipeline, "run", r.Run, "in", wait, "err", err)
		return
	}
	p.forget(key)
	msg := ""
	for _, s := range st.Stages {
		if s.Message != "" {
			msg = s.Name + ": " + s.Message
		}
	}
	p.finish(r, st.Phase, msg)
}

// giveUpAfter is how long a run's driving may keep failing before the run is failed.
const giveUpAfter = time.Hour

func (p *Supervisor) forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.backoff, key)
	delete(p.retry, key)
	delete(p.failingSince, key)
}

func (p *Supervisor) finish(r ledger.PipelineRun, phase Phase, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Runs.FinishPipelineRun(ctx, r.Pipeline, r.Run, string(phase), msg, time.Now()); err != nil {
		p.Log.Error("pipelines: record the end of a run", "pipeline", r.Pipeline, "run", r.Run, "err", err)
		return
	}
	p.Log.Info("pipeline run finished", "pipeline", r.Pipeline, "run", r.Run, "phase", phase, "message", msg)
}

// Status is where a run stands: the ledger's record, and its stages from the cluster.
func (p *Supervisor) Status(ctx context.Context, name, run string) (ledger.PipelineRun, []StageStatus, error) {
	r, err := p.Runs.PipelineRun(ctx, name, run)
	if err != nil {
		return r, nil, err
	}
	var def Definition
	if err := json.Unmarshal(r.Definition, &def); err != nil {
		return r, nil, fmt.Errorf("pipeline %s run %s: the recorded definition does not load: %w", name, run, err)
	}
	st, err := p.Observer.Step(ctx, &def, run)
	if err != nil {
		return r, nil, err
	}
	return r, st.Stages, nil
}

// List is the latest runs, newest first, at most limit.
func (p *Supervisor) List(ctx context.Context, limit int) ([]ledger.PipelineRun, error) {
	return p.Runs.PipelineRuns(ctx, false, limit)
}
