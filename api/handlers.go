package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing/fstest"
	"time"

	"github.com/labstack/echo/v5"

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
	cl := s.o.Classifier.WithRules(rs)
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
