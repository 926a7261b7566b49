package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing/fstest"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// historyLimit is how many outcomes of a job's template a recommendation weighs.
const historyLimit = 50

// maxBatch is the most events one batch may hold.
const maxBatch = 100

// recommend advises on one event. It reads the template's history and records
// nothing.
func (s *Server) recommend(c *echo.Context) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return jsonError(err)
	}
	ev, err := failure.Decode(body)
	if err != nil {
		return err
	}
	hist, err := s.o.Ledger.History(c.Request().Context(), []string{ev.HistoryKey()}, historyLimit)
	if err != nil {
		return err
	}
	start := time.Now()
	rec := s.o.Recommender.Recommend(&ev, hist[ev.HistoryKey()])
	s.o.Metrics.recommended(&rec, time.Since(start))
	return c.JSON(http.StatusOK, rec)
}

// BatchItem is one answer of a batch: a recommendation, or why the event could not
// be read.
type BatchItem struct {
	Recommendation *failure.Recommendation `json:"recommendation,omitempty"`
	Error          *Error                  `json:"error,omitempty"`
}

func (s *Server) recommendBatch(c *echo.Context) error {
	var req struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	switch {
	case len(req.Events) == 0:
		return badRequest("events", "want at least one event")
	case len(req.Events) > maxBatch:
		return badRequest("events", "%d events, at most %d per batch", len(req.Events), maxBatch)
	}
	out := make([]BatchItem, len(req.Events))
	evs := make([]*failure.Event, len(req.Events))
	var keys []string
	for i, raw := range req.Events {
		ev, err := failure.Decode(raw)
		if err != nil {
			e := s.toError(err)
			if e.Field != "" {
				e.Field = fmt.Sprintf("events[%d].%s", i, e.Field)
			}
			out[i].Error = e
			continue
		}
		evs[i] = &ev
		if k := ev.HistoryKey(); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	hist, err := s.o.Ledger.History(c.Request().Context(), keys, historyLimit)
	if err != nil {
		return err
	}
	for i, ev := range evs {
		if ev == nil {
			continue
		}
		start := time.Now()
		rec := s.o.Recommender.Recommend(ev, hist[ev.HistoryKey()])
		s.o.Metrics.recommended(&rec, time.Since(start))
		out[i].Recommendation = &rec
	}
	return c.JSON(http.StatusOK, map[string]any{"results": out})
}

// RemediationPage is a page of remediations; Next is the cursor of the next page
// ("" on the last).
type RemediationPage struct {
	Items []RemediationSummary `json:"items"`
	Next  string               `json:"next,omitempty"`
}

func (s *Server) listRemediations(c *echo.Context) error {
	f, err := filter(c)
	if err != nil {
		return err
	}
	list, err := s.o.Ledger.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	page := RemediationPage{Items: make([]RemediationSummary, 0, len(list))}
	for i := range list {
		page.Items = append(page.Items, summary(&list[i]))
	}
	if len(list) == f.Limit && len(list) > 0 {
		page.Next = list[len(list)-1].EventID
	}
	return c.JSON(http.StatusOK, page)
}

var allStates = []ledger.State{ledger.Received, ledger.Classified, ledger.Recommended, ledger.PendingReview,
	ledger.Approved, ledger.Submitted, ledger.Succeeded, ledger.Failed, ledger.Rejected, ledger.Abandoned}

// filter reads the list's query: state (comma-separated), category, namespace, job,
// since and until (RFC 3339), after (the cursor) and limit (1-1000, default 100).
func filter(c *echo.Context) (ledger.Filter, error) {
	q := c.QueryParams()
	for k := range q {
		if !slices.Contains([]string{"state", "category", "namespace", "job", "since", "until", "after", "limit"}, k) {
			return ledger.Filter{}, badRequest(k, "unknown query parameter")
		}
	}
	f := ledger.Filter{Category: failure.Category(q.Get("category")), Namespace: q.Get("namespace"), Job: q.Get("job"),
		After: q.Get("after"), Limit: 100}
	if v := q.Get("state"); v != "" {
		for _, st := range strings.Split(v, ",") {
			if !slices.Contains(allStates, ledger.State(st)) {
				return f, badRequest("state", "%q is not a state (want one of %v)", st, allStates)
			}
			f.States = append(f.States, ledger.State(st))
		}
	}
	if f.Category != "" && !slices.Contains(failure.Categories(), f.Category) {
		return f, badRequest("category", "%q is not a category", f.Category)
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, badRequest(p.name, "%q is not an RFC 3339 time", v)
			}
			*p.t = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, badRequest("limit", "%q: want 1 to 1000", v)
		}
		f.Limit = n
	}
	return f, nil
}

// remediationID is the {id} of the path, unescaped: the id of a rejected message
// (kafka:<topic>/<partition>/<offset>) holds slashes, sent as %2F.
func remediationID(c *echo.Context) (string, error) {
	id, err := url.PathUnescape(c.Param("id"))
	if err != nil {
		return "", badRequest("id", "%v", err)
	}
	return id, nil
}

func (s *Server) getRemediation(c *echo.Context) error {
	id, err := remediationID(c)
	if err != nil {
		return err
	}
	r, err := s.o.Ledger.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, view(&r))
}

// ApproveRequest approves a fix kept for review: the recommendation's chosen option,
// another option of its Pareto front, and resources or params edited within the
// policy's caps.
type ApproveRequest struct {
	Reason string `json:"reason"`
	// Option indexes the recommendation's options (default: the chosen one).
	Option *int `json:"option,omitempty"`
	// Resources and Params replace the option's (only the fields given).
	Resources *failure.Resources `json:"resources,omitempty"`
	Params    map[string]string  `json:"params,omitempty"`
}

func (s *Server) approve(c *echo.Context) error {
	var req ApproveRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return s.decide(c, func(ctx context.Context, id string, p auth.Principal) error { return s.doApprove(ctx, id, p, req) })
}

// decide makes a review decision on the remediation of the path, for the caller, and
// answers with the remediation as it now stands.
func (s *Server) decide(c *echo.Context, do func(ctx context.Context, id string, p auth.Principal) error) error {
	p, _ := principal(c)
	id, err := remediationID(c)
	if err != nil {
		return err
	}
	if err := do(c.Request().Context(), id, p); err != nil {
		return err
	}
	return s.getRemediation(c)
}

// doApprove approves remediation id for p: the checks, the attempt, the audit row.
func (s *Server) doApprove(ctx context.Context, id string, p auth.Principal, req ApproveRequest) error {
	if len(req.Reason) > 1000 {
		return badRequest("reason", "at most 1000 characters")
	}
	r, err := s.o.Ledger.Get(ctx, id)
	if err != nil {
		return err
	}
	if r.State != ledger.PendingReview {
		return apiErr(http.StatusConflict, "", "remediation %s is %s: only a pending_review one can be approved", r.EventID, r.State)
	}
	if r.Event == nil || r.Recommendation == nil {
		return apiErr(http.StatusConflict, "", "remediation %s has no event to act on", r.EventID)
	}
	ev, rec := r.Event, r.Recommendation
	opt := failure.Option{Resources: ev.Job.Resources, Params: ev.Job.Params, CostMultiple: 1}
	picked := "the failed run's configuration"
	switch {
	case req.Option != nil:
		i := *req.Option
		if i < 0 || i >= len(rec.Options) {
			return badRequest("option", "%d: the recommendation has %d options", i, len(rec.Options))
		}
		if !rec.Options[i].Pareto && i != rec.Chosen {
			return badRequest("option", "option %d is not on the Pareto front (another is both likelier to work and cheaper)", i)
		}
		opt, picked = rec.Options[i], fmt.Sprintf("option %d", i)
	case rec.Chosen >= 0 && rec.Chosen < len(rec.Options):
		opt, picked = rec.Options[rec.Chosen], fmt.Sprintf("the chosen option %d", rec.Chosen)
	case req.Resources == nil && len(req.Params) == 0:
		return badRequest("option", "the recommendation has no option to approve: give resources or params")
	}
	res, params := opt.Resources, maps.Clone(opt.Params)
	var edits []string
	if req.Resources != nil {
		res, edits, err = s.edit(res, *req.Resources)
		if err != nil {
			return err
		}
	}
	for k, v := range req.Params {
		tun, ok := ev.Job.Tunables[k]
		if !ok {
			return badRequest("params."+k, "not a tunable the job declares")
		}
		if err := checkTunable(tun, v); err != nil {
			return badRequest("params."+k, "%v", err)
		}
		if params == nil {
			params = map[string]string{}
		}
		params[k] = v
		edits = append(edits, k+"="+v)
	}
	if req.Resources != nil {
		l := s.o.Largest
		for _, c := range []struct {
			field     string
			got, most int64
		}{{"resources.memory", res.MemoryBytes, l.MemoryBytes}, {"resources.cpu", res.CPUMillis, l.CPUMillis},
			{"resources.gpu", int64(res.GPU), int64(l.GPU)}, {"resources.ephemeralStorage", res.EphemeralStorageBytes, l.EphemeralStorageBytes}} {
			if c.most > 0 && c.got > c.most {
				return badRequest(c.field, "more than the largest node has")
			}
		}
		if res.GPU > 0 {
			if _, ok := s.o.Catalogue.GPU(res.GPUType); !ok {
				return badRequest("resources.gpuType", "%q: GPUs need a GPU model of the catalogue, which prices them", res.GPUType)
			}
		}
		if s.o.Catalogue.HourlyCost(ev.Job.Resources) <= 0 {
			return badRequest("resources", "the failed run asked for no priced resources, so an edit cannot be held to the policy's cost cap")
		}
	}
	// The cap holds for what is approved, whichever way: a run's cost is its hourly
	// price times its runtime, so an edit scales the option's run cost (which has
	// its predicted runtime, a longer one for a longer deadline) by the change of
	// price.
	field, m := "option", opt.CostMultiple
	if m <= 0 {
		m = 1 // the failed run's own configuration
	}
	if req.Resources != nil {
		field = "resources"
		if was := s.o.Catalogue.HourlyCost(opt.Resources); was > 0 {
			m *= s.o.Catalogue.HourlyCost(res) / was
		} else {
			m = s.o.Catalogue.HourlyCost(res) / s.o.Catalogue.HourlyCost(ev.Job.Resources)
		}
	}
	if m > s.o.Policy.MaxCostMultiple {
		return badRequest(field, "%.2fx the failed run's cost, over the policy's cap of %.2fx", m, s.o.Policy.MaxCostMultiple)
	}
	runs, err := s.o.Ledger.ChainAttempts(ctx, []string{r.ChainID})
	if err != nil {
		return err
	}
	n := max(runs[r.ChainID], ev.Job.Attempt, 1)
	if limit := s.o.Policy.MaxAttemptsFor(ev); n >= limit {
		return apiErr(http.StatusConflict, "", "the chain has had %d runs, the policy's budget is %d", n, limit)
	}
	detail := "approved " + picked
	if len(edits) > 0 {
		detail += ", edited: " + strings.Join(edits, ", ")
	}
	if req.Reason != "" {
		detail += ": " + req.Reason
	}
	// The attempt runs with the whole option picked — its deadline, nodes to avoid,
	// delay and changes too — with the approver's edits.
	opt.Resources, opt.Params = res, params
	if len(edits) > 0 {
		opt.Changes = append(slices.Clone(opt.Changes), "edited by "+p.Name+": "+strings.Join(edits, ", "))
	}
	original := failure.ChainOriginal(r.ChainID, ev.Job.Namespace, ev.Job.Name)
	a := ledger.Attempt{ChainID: r.ChainID, Number: n + 1, EventID: r.EventID,
		JobName: failure.AttemptName(original, n+1), Resources: res, Params: params, Option: &opt}
	if err := s.o.Ledger.Approve(ctx, r.EventID, a, p.Name, detail, s.o.Now()); err != nil {
		return err
	}
	s.o.Metrics.reviewed("approve")
	s.log.Info("remediation approved", "id", r.EventID, "by", p.Name, "job", a.JobName)
	return nil
}

// edit applies an approver's resources (the fields given) to res, within the
// catalogue.
func (s *Server) edit(res, e failure.Resources) (failure.Resources, []string, error) {
	var edits []string
	if e.MemoryBytes < 0 || e.CPUMillis < 0 || e.GPU < 0 || e.EphemeralStorageBytes < 0 {
		return res, nil, badRequest("resources", "negative resources")
	}
	if e.MemoryBytes > 0 {
		res.MemoryBytes = e.MemoryBytes
		edits = append(edits, fmt.Sprintf("memory=%.1fGi", float64(e.MemoryBytes)/(1<<30)))
	}
	if e.CPUMillis > 0 {
		res.CPUMillis = e.CPUMillis
		edits = append(edits, fmt.Sprintf("cpu=%dm", e.CPUMillis))
	}
	if e.EphemeralStorageBytes > 0 {
		res.EphemeralStorageBytes = e.EphemeralStorageBytes
		edits = append(edits, fmt.Sprintf("ephemeral-storage=%.1fGi", float64(e.EphemeralStorageBytes)/(1<<30)))
	}
	if e.GPU > 0 {
		res.GPU = e.GPU
		edits = append(edits, fmt.Sprintf("gpu=%d", e.GPU))
	}
	if e.GPUType != "" {
		if _, ok := s.o.Catalogue.GPU(e.GPUType); !ok {
			return res, nil, badRequest("resources.gpuType", "%q is not a GPU model of the catalogue", e.GPUType)
		}
		res.GPUType = e.GPUType
		edits = append(edits, "gpuType="+e.GPUType)
	}
	return res, edits, nil
}

// checkTunable holds an approver's value to what the job declares of the parameter.
func checkTunable(t failure.Tunable, v string) error {
	if len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%q: at most 256 printable characters", v)
	}
	if len(t.Values) > 0 {
		if !slices.Contains(t.Values, v) {
			return fmt.Errorf("%q: want one of %v", v, t.Values)
		}
		return nil
	}
	if t.Min != 0 || t.Max != 0 {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < t.Min || (t.Max != 0 && f > t.Max) {
			return fmt.Errorf("%q: want a number from %g to %g", v, t.Min, t.Max)
		}
	}
	return nil
}

// RejectRequest rejects a fix kept for review; the reason is required.
type RejectRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) reject(c *echo.Context) error {
	var req RejectRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return s.decide(c, func(ctx context.Context, id string, p auth.Principal) error {
		return s.doReject(ctx, id, p, req.Reason)
	})
}

// doReject rejects remediation id for p, with the reason in the audit trail.
func (s *Server) doReject(ctx context.Context, id string, p auth.Principal, reason string) error {
	switch reason = strings.TrimSpace(reason); {
	case reason == "":
		return badRequest("reason", "required: say why, for whoever looks at this job next")
	case len(reason) > 1000:
		return badRequest("reason", "at most 1000 characters")
	}
	r, err := s.o.Ledger.Get(ctx, id)
	if err != nil {
		return err
	}
	if r.State != ledger.PendingReview {
		return apiErr(http.StatusConflict, "", "remediation %s is %s: only a pending_review one can be rejected", r.EventID, r.State)
	}
	if err := s.o.Ledger.Reject(ctx, r.EventID, p.Name, reason, s.o.Now()); err != nil {
		return err
	}
	s.o.Metrics.reviewed("reject")
	s.log.Info("remediation rejected", "id", r.EventID, "by", p.Name)
	return nil
}

// JobHistory is what autofix knows of one job: its failures and their fixes, and
// the recorded runs of its template.
type JobHistory struct {
	Namespace    string               `json:"namespace"`
	Name         string               `json:"name"`
	Template     string               `json:"template,omitempty"`
	Remediations []RemediationSummary `json:"remediations"`
	Outcomes     []failure.Outcome    `json:"outcomes"`
}

func (s *Server) jobHistory(c *echo.Context) error {
	ctx := c.Request().Context()
	h := JobHistory{Namespace: c.Param("namespace"), Name: c.Param("name"), Remediations: []RemediationSummary{}, Outcomes: []failure.Outcome{}}
	list, err := s.o.Ledger.List(ctx, ledger.Filter{Namespace: h.Namespace, Job: h.Name, Limit: 1000})
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return apiErr(http.StatusNotFound, "", "no failure of job %s/%s is recorded", h.Namespace, h.Name)
	}
	for i := range list {
		h.Remediations = append(h.Remediations, summary(&list[i]))
		if h.Template == "" && list[i].Event != nil {
			h.Template = list[i].Event.Job.Template
		}
	}
	if h.Template != "" {
		key := failure.TemplateKey(h.Namespace, h.Template)
		out, err := s.o.Ledger.History(ctx, []string{key}, 0)
		if err != nil {
			return err
		}
		if o := out[key]; o != nil {
			h.Outcomes = o
		}
	}
	return c.JSON(http.StatusOK, h)
}

// RuleView is one rule of the rule set in use.
type RuleView struct {
	ID          string           `json:"id"`
	Description string           `json:"description,omitempty"`
	Expr        string           `json:"expr"`
	Category    failure.Category `json:"category"`
	Retryable   bool             `json:"retryable"`
	Action      failure.Action   `json:"action"`
	Confidence  float64          `json:"confidence"`
	Priority    int              `json:"priority"`
	File        string           `json:"file"`
	Line        int              `json:"line"`
}

func (s *Server) listRules(c *echo.Context) error {
	out := []RuleView{}
	for _, r := range s.o.Classifier.RuleSet().Rules() {
		out = append(out, RuleView{ID: r.ID, Description: r.Description, Expr: r.Expr, Category: r.Category, Retryable: r.Retryable,
			Action: r.Action, Confidence: r.Confidence, Priority: r.Priority, File: r.File, Line: r.Line})
	}
	return c.JSON(http.StatusOK, map[string]any{"rules": out, "tests": len(s.o.Classifier.RuleSet().Tests())})
}

// RulesTestRequest is a candidate rule set (file name -> YAML) and an event to
// classify with it.
type RulesTestRequest struct {
	Files map[string]string `json:"files"`
	Event json.RawMessage   `json:"event"`
}

// RulesTestResult is how the candidate classifies the event, and its own test cases'
// failures.
type RulesTestResult struct {
	Classification failure.Classification `json:"classification"`
	Rules          int                    `json:"rules"`
	Tests          int                    `json:"tests"`
	TestFailures   []string               `json:"testFailures"`
	RuleErrors     []string               `json:"ruleErrors"`
}

func (s *Server) testRules(c *echo.Context) error {
	var req RulesTestRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.Files) == 0 {
		return badRequest("files", "want at least one rule file (name -> YAML)")
	}
	fsys := fstest.MapFS{}
	for name, text := range req.Files {
		if !strings.HasSuffix(name, ".yaml") || strings.ContainsAny(name, `/\`) || len(name) > 100 {
			return badRequest("files."+name, "want a plain file name ending in .yaml")
		}
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
	}
	// The candidate is untrusted: the rule language bounds each rule's cost (see
	// classifier's limits), and the request's deadline stops the whole run between
	// rules, so a huge or slow candidate gets a 503 saying so, not a busy core.
	ctx := c.Request().Context()
	tooSlow := func(err error) error {
		return apiErr(http.StatusServiceUnavailable, "files", "the candidate rules did not finish within the request's time limit: %v", err)
	}
	rs, err := classifier.LoadContext(ctx, fsys)
	if err != nil {
		var le *classifier.LoadError
		switch {
		case errors.As(err, &le):
			return badRequest("files."+le.File, "%v", err)
		case ctx.Err() != nil:
			return tooSlow(err)
		}
		return badRequest("files", "%v", err)
	}
	if len(req.Event) == 0 {
		return badRequest("event", "required")
	}
	ev, err := failure.Decode(req.Event)
	if err != nil {
		var fe *failure.FieldError
		if errors.As(err, &fe) {
			return badRequest("event."+fe.Field, "%s", fe.Problem)
		}
		return badRequest("event", "%v", err)
	}
	cl := classifier.New(rs, classifier.Options{MinConfidence: 0.5})
	cls, ruleErrs, err := cl.ClassifyContext(ctx, &ev)
	if err != nil {
		return tooSlow(err)
	}
	failures, err := cl.CheckContext(ctx)
	if err != nil {
		return tooSlow(err)
	}
	res := RulesTestResult{Classification: cls, Rules: len(rs.Rules()), Tests: len(rs.Tests()), TestFailures: []string{}, RuleErrors: []string{}}
	for _, f := range failures {
		res.TestFailures = append(res.TestFailures, f.Error())
	}
	for _, e := range ruleErrs {
		res.RuleErrors = append(res.RuleErrors, e.Error())
	}
	return c.JSON(http.StatusOK, res)
}

// ModelView is a model set and how it scored on held-out jobs.
type ModelView struct {
	Kind       string `json:"kind"`
	Version    int    `json:"version"`
	Name       string `json:"name"`
	InUse      bool   `json:"inUse"`
	Evaluation any    `json:"evaluation,omitempty"`
}

func (s *Server) listModels(c *echo.Context) error {
	m := s.o.Models
	out := []ModelView{{Kind: m.Kind, Version: m.Version, Name: m.Name, InUse: true}}
	if m.Evaluation != nil {
		out[0].Evaluation = m.Evaluation
	}
	return c.JSON(http.StatusOK, map[string]any{"models": out})
}

// PauseView is the kill switch.
type PauseView struct {
	Paused bool       `json:"paused"`
	By     string     `json:"by,omitempty"`
	Reason string     `json:"reason,omitempty"`
	At     *time.Time `json:"at,omitempty"`
}

func (s *Server) getPause(c *echo.Context) error {
	p, err := s.o.Ledger.PauseState(c.Request().Context())
	if err != nil {
		return err
	}
	v := PauseView{Paused: p.Paused, By: p.Actor, Reason: p.Reason}
	if !p.At.IsZero() {
		v.At = &p.At
	}
	return c.JSON(http.StatusOK, v)
}

// PauseRequest turns the kill switch on or off; a reason is required to pause.
type PauseRequest struct {
	Paused *bool  `json:"paused"`
	Reason string `json:"reason"`
}

func (s *Server) setPause(c *echo.Context) error {
	var req PauseRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	req.Reason = strings.TrimSpace(req.Reason)
	switch {
	case req.Paused == nil:
		return badRequest("paused", "required: true to stop automatic fixes, false to resume")
	case *req.Paused && req.Reason == "":
		return badRequest("reason", "required to pause: say why")
	case len(req.Reason) > 1000:
		return badRequest("reason", "at most 1000 characters")
	}
	p, _ := principal(c)
	if err := s.o.Ledger.SetPaused(c.Request().Context(), *req.Paused, p.Name, req.Reason, s.o.Now()); err != nil {
		return err
	}
	s.log.Warn("kill switch set", "paused", *req.Paused, "by", p.Name, "reason", req.Reason)
	return s.getPause(c)
}
