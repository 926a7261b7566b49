package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/api/client"
	"github.com/autofix/autofix/auth"
)

// TestGeneratedClient calls the server through the Go client generated from
// docs/openapi.yaml (api/client), as a second program written against the document
// would: the server runs as `serve` runs it (HTTPServer, Serve) on a loopback
// listener, every exchange is also checked against the document (checkSpec), and
// every 200 body is decoded strictly into the generated type, so a field the server
// sends that the document lacks fails here. The parts share one server (building
// one is most of the time) and each works on remediations of its own namespace.
func TestGeneratedClient(t *testing.T) {
	e := newEnv(t)
	base := liveServer(t, e)
	t.Run("recommends", func(t *testing.T) { testClientRecommends(t, e, base) })
	t.Run("reviews remediations", func(t *testing.T) { testClientReviews(t, e, base) })
	t.Run("decodes errors", func(t *testing.T) { testClientErrors(t, e, base) })
	t.Run("reads rules, models and the kill switch", func(t *testing.T) { testClientReads(t, e, base) })
}

// liveServer serves e's server on a loopback listener of its own, as serve does, until
// the test ends, and returns its base URL.
func liveServer(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.srv.HTTPServer(ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(srv, ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// specDoer makes the generated client's requests, checking each exchange against
// docs/openapi.yaml.
type specDoer struct {
	t *testing.T
	c *http.Client
}

func (d specDoer) Do(req *http.Request) (*http.Response, error) {
	d.t.Helper()
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := d.c.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	checkSpec(d.t, req, reqBody, resp.StatusCode, resp.Header, body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// apiClient is a generated client for base that sends role's token ("" sends none).
func (e *env) apiClient(t *testing.T, base string, role auth.Role) *client.ClientWithResponses {
	t.Helper()
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(hc.CloseIdleConnections)
	opts := []client.ClientOption{client.WithHTTPClient(specDoer{t: t, c: hc})}
	if role != "" {
		token := e.tokens[role]
		opts = append(opts, client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+token)
			return nil
		}))
	}
	c, err := client.NewClientWithResponses(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// strict decodes a 200 body into the generated type T, refusing fields T lacks.
func strict[T any](t *testing.T, what string, body []byte) T {
	t.Helper()
	var v T
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&v); err != nil {
		t.Errorf("%s: the body does not decode strictly into the generated %T: %v\nbody: %s", what, v, err, clipBody(body))
	}
	return v
}

// ok fails the test unless the call succeeded with status 200 and a typed body.
func ok[T any](t *testing.T, what string, status int, typed *T, body []byte, err error) *T {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if status != http.StatusOK || typed == nil {
		t.Fatalf("%s: status %d, typed body %v; want 200 and a body\nbody: %s", what, status, typed != nil, clipBody(body))
	}
	strict[T](t, what, body)
	return typed
}

func ptr[T any](v T) *T { return &v }

// quantity is a QuantityInput holding v, a string ("16Gi") or a number (bytes, cores).
func quantity[V string | float64](t *testing.T, v V) *client.QuantityInput {
	t.Helper()
	var q client.QuantityInput
	var err error
	switch v := any(v).(type) {
	case string:
		err = q.FromQuantityInput0(v)
	case float64:
		err = q.FromQuantityInput1(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &q
}

// clientOOMEvent is oomEvent as a client program builds it: the generated types, the
// quantities one as a string and one as a number, a parameter of each JSON kind.
func clientOOMEvent(t *testing.T, id, job string) client.FailureEvent {
	t.Helper()
	var kind client.FailedJob_Kind
	if err := kind.FromJobKind(client.JobKindTraining); err != nil {
		t.Fatal(err)
	}
	params := map[string]client.FailedJob_Params_AdditionalProperties{}
	for name, set := range map[string]func(*client.FailedJob_Params_AdditionalProperties) error{
		"precision":  func(p *client.FailedJob_Params_AdditionalProperties) error { return p.FromFailedJobParams0("bf16") },
		"batch_size": func(p *client.FailedJob_Params_AdditionalProperties) error { return p.FromFailedJobParams1(64) },
		"compile":    func(p *client.FailedJob_Params_AdditionalProperties) error { return p.FromFailedJobParams2(true) },
	} {
		var p client.FailedJob_Params_AdditionalProperties
		if err := set(&p); err != nil {
			t.Fatal(err)
		}
		params[name] = p
	}
	return client.FailureEvent{
		Id: id, Time: ptr("2026-11-25T10:00:00Z"), Source: ptr("kubernetes"),
		Job: client.FailedJob{Namespace: ptr("ml"), Name: job, Template: ptr("resnet50-train"), Kind: &kind,
			Attempt: ptr(1), Image: ptr("registry.local/train:1.4"), Params: &params,
			Resources: &client.ResourcesInput{Cpu: quantity(t, 8.0), Memory: quantity(t, "16Gi")}},
		Failure: client.FailureSignals{Reason: ptr("OOMKilled"), ExitCode: ptr(137), DurationSeconds: ptr(1834.0),
			Node: ptr("node-3"), LogTail: ptr("epoch 3 step 1200 loss 1.92"), Usage: &map[string]any{"peakMemory": "15.9Gi"}},
	}
}

func testClientRecommends(t *testing.T, e *env, base string) {
	viewer := e.apiClient(t, base, auth.Viewer)
	ctx := t.Context()

	ev := clientOOMEvent(t, "ev-client-1", "resnet50-train-9")
	r, err := viewer.RecommendWithResponse(ctx, ev)
	rec := ok(t, "recommend", r.StatusCode(), r.JSON200, r.Body, err)
	if rec.EventId != ev.Id || rec.Job.Name != ev.Job.Name || rec.Job.Template != "resnet50-train" {
		t.Errorf("recommendation for %q job %+v; want %q, job %s of template resnet50-train", rec.EventId, rec.Job, ev.Id, ev.Job.Name)
	}
	if rec.Classification.Category != client.CategoryOomMemory || rec.Classification.Action != client.ActionIncreaseMemory {
		t.Errorf("classified %s (%s); want oom_memory (increase_memory)", rec.Classification.Category, rec.Classification.Action)
	}
	if !rec.Retry || rec.Options == nil || rec.Chosen < 0 || rec.Chosen >= len(*rec.Options) {
		t.Fatalf("retry %v, chosen %d of %d options; want a retry with a chosen option", rec.Retry, rec.Chosen, len(ptrSlice(rec.Options)))
	}
	chosen := (*rec.Options)[rec.Chosen]
	if chosen.Resources.Memory == nil || *chosen.Resources.Memory == "16Gi" || chosen.PSuccess <= 0 || chosen.RunCost <= 0 {
		t.Errorf("chosen option %+v; want more memory than the failed run's 16Gi, a chance of success and a cost", chosen)
	}
	if rec.Explanation == "" {
		t.Error("no explanation")
	}

	// A batch: an event, and one that does not decode, answered in its place.
	b, err := viewer.RecommendBatchWithResponse(ctx, client.BatchRequest{Events: []any{ev, map[string]any{"job": map[string]any{"name": "x"}}}})
	batch := ok(t, "recommend batch", b.StatusCode(), b.JSON200, b.Body, err)
	if len(batch.Results) != 2 {
		t.Fatalf("%d results, want 2", len(batch.Results))
	}
	if got := batch.Results[0].Recommendation; got == nil || got.EventId != ev.Id {
		t.Errorf("results[0] = %+v, want the recommendation for %s", batch.Results[0], ev.Id)
	}
	if got := batch.Results[1].Error; got == nil || got.Code != client.ErrorCodeBadRequest || got.Field == nil || !strings.HasPrefix(*got.Field, "events[1].") {
		t.Errorf("results[1].error = %+v, want a bad_request whose field starts with events[1].", got)
	}
}

// ptrSlice is *s, or nil.
func ptrSlice[T any](s *[]T) []T {
	if s == nil {
		return nil
	}
	return *s
}

func testClientReviews(t *testing.T, e *env, base string) {
	viewer, approver := e.apiClient(t, base, auth.Viewer), e.apiClient(t, base, auth.Approver)
	ctx := t.Context()
	first := e.pending(oomEvent)
	second := e.pending(strings.NewReplacer("ev-oom-1", "ev-oom-2", "resnet50-train-7", "resnet50-train-8").Replace(oomEvent))

	// Both pending, one page at a time.
	var seen []string
	var after *string
	for page := 1; ; page++ {
		l, err := viewer.ListRemediationsWithResponse(ctx, &client.ListRemediationsParams{
			Namespace: ptr("ml"), State: &[]client.State{client.StatePendingReview, client.StateApproved}, Limit: ptr(1), After: after})
		list := ok(t, "list page", l.StatusCode(), l.JSON200, l.Body, err)
		for _, it := range list.Items {
			seen = append(seen, it.Id)
			if it.State != client.StatePendingReview || it.Category == nil || *it.Category != client.CategoryOomMemory || it.Chosen == nil {
				t.Errorf("list item %s: state %s, category %v, chosen %v; want pending_review oom_memory with a chosen option",
					it.Id, it.State, it.Category, it.Chosen != nil)
			}
		}
		if after = list.Next; after == nil {
			break
		}
		if page > 2 {
			t.Fatalf("page %d still has a next (%q); want 2 pages of 1", page, *after)
		}
	}
	slices.Sort(seen)
	if want := []string{first.EventID, second.EventID}; !slices.Equal(seen, want) {
		t.Errorf("pages held %q, want %q once each", seen, want)
	}

	// One remediation, whole.
	g, err := viewer.GetRemediationWithResponse(ctx, first.EventID)
	v := ok(t, "get", g.StatusCode(), g.JSON200, g.Body, err)
	if v.Id != first.EventID || v.State != client.StatePendingReview || v.Event == nil || v.Event.Id != first.EventID ||
		v.Recommendation == nil || v.Job == nil || *v.Job != "resnet50-train-7" || len(v.Audit) == 0 {
		t.Errorf("get %s: %+v; want it pending_review with its event, recommendation, job and audit", first.EventID, v)
	}

	// Approve with an edit: memory as a number of bytes, CPU as a string.
	a, err := approver.ApproveRemediationWithResponse(ctx, first.EventID, client.ApproveRequest{
		Reason:    ptr("24Gi is what it peaks at"),
		Resources: &client.ResourcesInput{Memory: quantity(t, float64(24<<30)), Cpu: quantity(t, "8")}})
	v = ok(t, "approve", a.StatusCode(), a.JSON200, a.Body, err)
	if v.State != client.StateApproved || v.Retry == nil || v.Retry.Number != 2 || v.Retry.Job != "resnet50-train-7-af2" ||
		v.Retry.Resources.Memory == nil || *v.Retry.Resources.Memory != "24Gi" {
		t.Errorf("approved: state %s, retry %+v; want approved, attempt 2 resnet50-train-7-af2 with 24Gi", v.State, v.Retry)
	}
	if last := v.Audit[len(v.Audit)-1]; last.Actor != "val" || last.Action != "approve" || last.To == nil || *last.To != client.StateApproved ||
		last.Detail == nil || !strings.Contains(*last.Detail, "peaks") {
		t.Errorf("last audit line %+v; want val's approval, to approved, with the reason", last)
	}

	// Reject the other, with a reason.
	rj, err := approver.RejectRemediationWithResponse(ctx, second.EventID, client.RejectRequest{Reason: "the data loader leaks; fix the code"})
	v = ok(t, "reject", rj.StatusCode(), rj.JSON200, rj.Body, err)
	if last := v.Audit[len(v.Audit)-1]; v.State != client.StateRejected || last.Actor != "val" || last.Detail == nil || !strings.Contains(*last.Detail, "data loader") {
		t.Errorf("rejected: state %s, last audit line %+v; want rejected by val with the reason", v.State, last)
	}

	// Correct the rejected one's classification: the correction comes back, and is on
	// the remediation.
	c, err := approver.CorrectRemediationWithResponse(ctx, second.EventID, client.CorrectRequest{
		Category: client.CategoryUserCode, Retryable: false, Note: ptr("the loader leaks: a code bug")})
	corr := ok(t, "correct", c.StatusCode(), c.JSON200, c.Body, err)
	if corr.Category != client.CategoryUserCode || corr.Retryable || corr.By != "val" || corr.At.IsZero() ||
		corr.Note == nil || *corr.Note != "the loader leaks: a code bug" {
		t.Errorf("correction %+v; want user_code, not retryable, by val, with the note", corr)
	}
	g, err = viewer.GetRemediationWithResponse(ctx, second.EventID)
	v = ok(t, "get the corrected", g.StatusCode(), g.JSON200, g.Body, err)
	if v.Correction == nil || v.Correction.Category != client.CategoryUserCode || !v.Correction.At.Equal(corr.At) {
		t.Errorf("the corrected remediation's correction is %+v, want %+v", v.Correction, corr)
	}

	// The job's history shows its one failure, now approved.
	h, err := viewer.GetJobHistoryWithResponse(ctx, "ml", "resnet50-train-7")
	hist := ok(t, "job history", h.StatusCode(), h.JSON200, h.Body, err)
	if len(hist.Remediations) != 1 || hist.Remediations[0].Id != first.EventID || hist.Remediations[0].State != client.StateApproved {
		t.Errorf("history remediations %+v; want %s, approved", hist.Remediations, first.EventID)
	}
}

func testClientReads(t *testing.T, e *env, base string) {
	viewer, admin := e.apiClient(t, base, auth.Viewer), e.apiClient(t, base, auth.Admin)
	ctx := t.Context()

	r, err := viewer.ListRulesWithResponse(ctx)
	rules := ok(t, "rules", r.StatusCode(), r.JSON200, r.Body, err)
	if len(rules.Rules) == 0 || rules.Tests == 0 {
		t.Fatalf("%d rules, %d tests; want the embedded rule set and its tests", len(rules.Rules), rules.Tests)
	}
	oom := false
	for _, rl := range rules.Rules {
		if rl.Id == "" || rl.Expr == "" || !strings.HasSuffix(rl.File, ".yaml") || rl.Line < 1 || !rl.Category.Valid() || !rl.Action.Valid() {
			t.Errorf("rule %+v: want an id, an expression, a known category and action, and where it is written", rl)
		}
		oom = oom || rl.Category == client.CategoryOomMemory
	}
	if !oom {
		t.Error("no rule classifies oom_memory")
	}

	m, err := viewer.ListModelsWithResponse(ctx, nil)
	models := ok(t, "models", m.StatusCode(), m.JSON200, m.Body, err)
	if !slices.ContainsFunc(models.Models, func(m client.ModelVersionView) bool { return m.InUse }) {
		t.Errorf("models %+v: none in use", models.Models)
	}

	p, err := viewer.GetPauseWithResponse(ctx)
	if pause := ok(t, "get pause", p.StatusCode(), p.JSON200, p.Body, err); pause.Paused {
		t.Errorf("paused at start: %+v", pause)
	}
	sp, err := admin.SetPauseWithResponse(ctx, client.PauseRequest{Paused: true, Reason: ptr("incident 42")})
	pause := ok(t, "pause", sp.StatusCode(), sp.JSON200, sp.Body, err)
	if !pause.Paused || pause.By == nil || *pause.By != "ada" || pause.Reason == nil || *pause.Reason != "incident 42" || pause.At == nil {
		t.Errorf("paused: %+v; want paused by ada for incident 42, with the time", pause)
	}

	hz, err := viewer.HealthzWithResponse(ctx)
	if err != nil || hz.StatusCode() != http.StatusOK || string(hz.Body) != "ok\n" {
		t.Errorf("healthz: %v %d %q; want 200 \"ok\\n\"", err, hz.StatusCode(), hz.Body)
	}
	rz, err := e.apiClient(t, base, "").ReadyzWithResponse(ctx)
	if ready := ok(t, "readyz", rz.StatusCode(), rz.JSON200, rz.Body, err); !ready.Ready || ready.Details != nil {
		t.Errorf("readyz without a token: %+v; want ready, without details", ready)
	}
	mz, err := viewer.MetricsWithResponse(ctx)
	if err != nil || mz.StatusCode() != http.StatusOK || !bytes.Contains(mz.Body, []byte("# TYPE ")) {
		t.Errorf("metrics: %v %d; want 200 and the Prometheus text format\nbody: %s", err, mz.StatusCode(), clipBody(mz.Body))
	}
}

func testClientErrors(t *testing.T, e *env, base string) {
	anon, viewer, approver := e.apiClient(t, base, ""), e.apiClient(t, base, auth.Viewer), e.apiClient(t, base, auth.Approver)
	ctx := t.Context()
	r := e.pending(strings.NewReplacer(`"ev-oom-1"`, `"ev-err-1"`, `"namespace":"ml"`, `"namespace":"err"`).Replace(oomEvent))
	if a, err := approver.ApproveRemediationWithResponse(ctx, r.EventID, client.ApproveRequest{}); err != nil || a.StatusCode() != http.StatusOK {
		t.Fatalf("approve: %v %d %s", err, a.StatusCode(), a.Body)
	}

	// Each call returns the status and the typed body of the status the document
	// gives for it: a nil one means the client did not decode the error.
	type answer struct {
		status int
		body   *client.ErrorBody
		raw    []byte
	}
	for _, c := range []struct {
		name   string
		call   func() (answer, error)
		status int
		code   client.ErrorCode
		field  string
	}{
		{"no token", func() (answer, error) {
			x, err := anon.ListRemediationsWithResponse(ctx, nil)
			if err == nil && (x.Headers401 == nil || !strings.HasPrefix(x.Headers401.WWWAuthenticate, "Bearer")) {
				t.Errorf("no token: 401 headers %+v; want WWW-Authenticate: Bearer", x.Headers401)
			}
			return answer{x.StatusCode(), x.JSON401, x.Body}, err
		}, http.StatusUnauthorized, client.ErrorCodeUnauthorized, ""},
		{"a viewer approving", func() (answer, error) {
			x, err := viewer.ApproveRemediationWithResponse(ctx, "no-such-id", client.ApproveRequest{})
			return answer{x.StatusCode(), x.JSON403, x.Body}, err
		}, http.StatusForbidden, client.ErrorCodeForbidden, ""},
		{"a viewer testing rules", func() (answer, error) {
			x, err := viewer.TestRulesWithResponse(ctx, client.RulesTestRequest{Files: map[string]string{"a.yaml": ""}})
			return answer{x.StatusCode(), x.JSON403, x.Body}, err
		}, http.StatusForbidden, client.ErrorCodeForbidden, ""},
		{"no such remediation", func() (answer, error) {
			x, err := viewer.GetRemediationWithResponse(ctx, "no-such-id")
			return answer{x.StatusCode(), x.JSON404, x.Body}, err
		}, http.StatusNotFound, client.ErrorCodeNotFound, ""},
		{"approving what does not exist", func() (answer, error) {
			x, err := approver.ApproveRemediationWithResponse(ctx, "no-such-id", client.ApproveRequest{})
			return answer{x.StatusCode(), x.JSON404, x.Body}, err
		}, http.StatusNotFound, client.ErrorCodeNotFound, ""},
		{"a cursor the ledger does not hold", func() (answer, error) {
			x, err := viewer.ListRemediationsWithResponse(ctx, &client.ListRemediationsParams{After: ptr("no-such-id")})
			return answer{x.StatusCode(), x.JSON404, x.Body}, err
		}, http.StatusNotFound, client.ErrorCodeNotFound, ""},
		{"no job history", func() (answer, error) {
			x, err := viewer.GetJobHistoryWithResponse(ctx, "err", "never-failed")
			return answer{x.StatusCode(), x.JSON404, x.Body}, err
		}, http.StatusNotFound, client.ErrorCodeNotFound, ""},
		{"a limit out of range", func() (answer, error) {
			x, err := viewer.ListRemediationsWithResponse(ctx, &client.ListRemediationsParams{Limit: ptr(0)})
			return answer{x.StatusCode(), x.JSON400, x.Body}, err
		}, http.StatusBadRequest, client.ErrorCodeBadRequest, "limit"},
		{"a blank reason", func() (answer, error) {
			x, err := approver.RejectRemediationWithResponse(ctx, r.EventID, client.RejectRequest{Reason: "  "})
			return answer{x.StatusCode(), x.JSON400, x.Body}, err
		}, http.StatusBadRequest, client.ErrorCodeBadRequest, "reason"},
		{"approving twice", func() (answer, error) {
			x, err := approver.ApproveRemediationWithResponse(ctx, r.EventID, client.ApproveRequest{})
			return answer{x.StatusCode(), x.JSON409, x.Body}, err
		}, http.StatusConflict, client.ErrorCodeConflict, ""},
		{"pipelines without a cluster", func() (answer, error) {
			x, err := viewer.ListPipelinesWithResponse(ctx)
			return answer{x.StatusCode(), x.JSON503, x.Body}, err
		}, http.StatusServiceUnavailable, client.ErrorCodeUnavailable, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.call()
			if err != nil {
				t.Fatal(err)
			}
			if got.status != c.status || got.body == nil {
				t.Fatalf("status %d, typed error %v; want %d with the error decoded\nbody: %s", got.status, got.body != nil, c.status, clipBody(got.raw))
			}
			strict[client.ErrorBody](t, c.name, got.raw)
			field := ""
			if got.body.Error.Field != nil {
				field = *got.body.Error.Field
			}
			if got.body.Error.Code != c.code || field != c.field || got.body.Error.Message == "" {
				t.Errorf("error %+v (field %q); want code %s, field %q and a message", got.body.Error, field, c.code, c.field)
			}
		})
	}
}
