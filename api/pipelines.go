package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
)

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

// PipelineRuns starts, lists and reports on pipeline runs (pipeline.Supervisor).
type PipelineRuns interface {
	Start(ctx context.Context, def *pipeline.Definition, run, by string) (ledger.PipelineRun, error)
	List(ctx context.Context, limit int) ([]ledger.PipelineRun, error)
	Status(ctx context.Context, name, run string) (ledger.PipelineRun, []pipeline.StageStatus, error)
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

func (s *Server) pipelines() (PipelineRuns, error) {
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
	runs, err := p.List(c.Request().Context(), 200)
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
	r, stages, err := p.Status(c.Request().Context(), c.Param("pipeline"), c.Param("run"))
	if err != nil {
		return err
	}
	v := runView(&r)
	v.Stages = stages
	return c.JSON(http.StatusOK, v)
}
