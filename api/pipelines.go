package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
)

// Pipelines runs the pipeline runs started through the service. A run is recorded in
// the ledger with its definition first; the leader drives every run the ledger has
// as running (so a run started on any replica, or left running by a restart, is
// driven), and records how it ended. The stages themselves live in the cluster,
// found by their labels, so a restarted driver starts nothing twice.
type Pipelines struct {
	Ledger *ledger.Store
	// Driver acts on the cluster (its Observe must be false); Observer reads it.
	Driver   *pipeline.Driver
	Observer *pipeline.Driver
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
func (p *Pipelines) Start(ctx context.Context, def *pipeline.Definition, run, by string) (ledger.PipelineRun, error) {
	b, err := json.Marshal(def)
	if err != nil {
		return ledger.PipelineRun{}, err
	}
	now := time.Now()
	r := ledger.PipelineRun{Pipeline: def.Name, Run: run, Namespace: def.Namespace, Definition: b, Phase: string(pipeline.Running),
		CreatedBy: by, CreatedAt: now, UpdatedAt: now}
	if err := p.Ledger.CreatePipelineRun(ctx, r); err != nil {
		return r, err
	}
	p.nudge()
	return r, nil
}

func (p *Pipelines) nudge() {
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
func (p *Pipelines) Run(ctx context.Context) {
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
		runs, err := p.Ledger.PipelineRuns(ctx, true, 0)
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

func (p *Pipelines) drive(ctx context.Context, r ledger.PipelineRun) {
	key := r.Pipeline + "/" + r.Run
	defer func() {
		p.mu.Lock()
		delete(p.driving, key)
		p.mu.Unlock()
	}()
	// The list this run came from may be older than its end (a drive that just
	// finished): look again.
	if cur, err := p.Ledger.PipelineRun(ctx, r.Pipeline, r.Run); err != nil || cur.Phase != string(pipeline.Running) {
		return
	}
	var def pipeline.Definition
	err := json.Unmarshal(r.Definition, &def)
	if err == nil {
		err = def.Validate()
	}
	if err != nil {
		p.finish(r, pipeline.Failed, "the recorded definition does not load: "+err.Error())
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
			p.finish(r, pipeline.Failed, "the run cannot go on: "+err.Error())
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

func (p *Pipelines) forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.backoff, key)
	delete(p.retry, key)
	delete(p.failingSince, key)
}

func (p *Pipelines) finish(r ledger.PipelineRun, phase pipeline.Phase, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Ledger.FinishPipelineRun(ctx, r.Pipeline, r.Run, string(phase), msg, time.Now()); err != nil {
		p.Log.Error("pipelines: record the end of a run", "pipeline", r.Pipeline, "run", r.Run, "err", err)
		return
	}
	p.Log.Info("pipeline run finished", "pipeline", r.Pipeline, "run", r.Run, "phase", phase, "message", msg)
}

// Status is where a run stands: the ledger's record, and its stages from the cluster.
func (p *Pipelines) Status(ctx context.Context, name, run string) (PipelineRunView, error) {
	r, err := p.Ledger.PipelineRun(ctx, name, run)
	if err != nil {
		return PipelineRunView{}, err
	}
	v := runView(&r)
	var def pipeline.Definition
	if err := json.Unmarshal(r.Definition, &def); err != nil {
		return v, fmt.Errorf("pipeline %s run %s: the recorded definition does not load: %w", name, run, err)
	}
	st, err := p.Observer.Step(ctx, &def, run)
	if err != nil {
		return v, err
	}
	v.Stages = st.Stages
	return v, nil
}

// PipelineRunView is a run as the API shows it.
type PipelineRunView struct {
	Pipeline  string                 `json:"pipeline"`
	Run       string                 `json:"run"`
	Namespace string                 `json:"namespace"`
	Phase     string                 `json:"phase"`
	Message   string                 `json:"message,omitempty"`
	CreatedBy string                 `json:"createdBy"`
	CreatedAt time.Time              `json:"createdAt"`
	UpdatedAt time.Time              `json:"updatedAt"`
	Stages    []pipeline.StageStatus `json:"stages,omitempty"`
}

func runView(r *ledger.PipelineRun) PipelineRunView {
	return PipelineRunView{Pipeline: r.Pipeline, Run: r.Run, Namespace: r.Namespace, Phase: r.Phase, Message: r.Message,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// StartPipelineRequest starts a run: the definition as a JSON object or as YAML text.
type StartPipelineRequest struct {
	Definition json.RawMessage `json:"definition,omitempty"`
	YAML       string          `json:"yaml,omitempty"`
	// Run is the run's id (default: one made from the time).
	Run string `json:"run,omitempty"`
}

var runRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$`)

func (s *Server) pipelines() (*Pipelines, error) {
	if s.o.Pipelines == nil {
		return nil, apiErr(http.StatusServiceUnavailable, "", "pipelines need a cluster: this server has none (kubernetes.kubeconfig: none)")
	}
	return s.o.Pipelines, nil
}

func (s *Server) startPipeline(c *echo.Context) error {
	p, err := s.pipelines()
	if err != nil {
		return err
	}
	var req StartPipelineRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	var src []byte
	switch {
	case len(req.Definition) > 0 && req.YAML != "":
		return badRequest("yaml", "give the definition or the yaml, not both")
	case len(req.Definition) > 0:
		src = req.Definition
	case req.YAML != "":
		src = []byte(req.YAML)
	default:
		return badRequest("definition", "required (or yaml)")
	}
	def, err := pipeline.Parse(src)
	if err != nil {
		return badRequest("definition", "%v", err)
	}
	// The driver checks again before it creates anything; refusing here tells the
	// caller at once.
	if err := def.CheckPods(s.o.Pods); err != nil {
		return badRequest("definition", "%v", err)
	}
	if req.Run == "" {
		req.Run = fmt.Sprintf("r%x", s.o.Now().UnixNano()/int64(time.Millisecond)%0xffffffff)
	}
	if !runRE.MatchString(req.Run) {
		return badRequest("run", "%q: want lower-case letters, digits and '-', at most 20", req.Run)
	}
	who, _ := principal(c)
	r, err := p.Start(c.Request().Context(), def, req.Run, who.Name)
	if errors.Is(err, ledger.ErrConflict) {
		return apiErr(http.StatusConflict, "run", "pipeline %s already has a run %s", def.Name, req.Run)
	}
	if err != nil {
		return err
	}
	s.log.Info("pipeline run started", "pipeline", def.Name, "run", req.Run, "by", who.Name)
	return c.JSON(http.StatusCreated, runView(&r))
}

func (s *Server) listPipelines(c *echo.Context) error {
	p, err := s.pipelines()
	if err != nil {
		return err
	}
	runs, err := p.Ledger.PipelineRuns(c.Request().Context(), false, 200)
	if err != nil {
		return err
	}
	out := make([]PipelineRunView, 0, len(runs))
	for i := range runs {
		out = append(out, runView(&runs[i]))
	}
	return c.JSON(http.StatusOK, map[string]any{"runs": out})
}

func (s *Server) getPipeline(c *echo.Context) error {
	p, err := s.pipelines()
	if err != nil {
		return err
	}
	v, err := p.Status(c.Request().Context(), c.Param("pipeline"), c.Param("run"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}
