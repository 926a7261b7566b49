package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/recommender"
	"github.com/autofix/autofix/registry"
	"github.com/autofix/autofix/review"
	"github.com/autofix/autofix/rules"
)

const oomEvent = `{"id":"ev-oom-1","time":"2026-11-25T10:00:00Z","source":"kubernetes","job":{"namespace":"ml","name":"resnet50-train-7",` +
	`"template":"resnet50-train","kind":"training","attempt":1,"image":"registry.local/train:1.4","resources":{"cpu":"8","memory":"16Gi"}},` +
	`"failure":{"reason":"OOMKilled","exitCode":137,"durationSeconds":1834,"node":"node-3","logTail":"epoch 3 step 1200 loss 1.92","usage":{"peakMemory":"15.9Gi"}}}`

// env is a server on a real SQLite ledger with the embedded rules and models, and a
// token of each role.
type env struct {
	t      testing.TB
	srv    *Server
	url    string
	auth   *auth.Authenticator
	store  *ledger.Store
	rec    *recommender.Recommender
	tokens map[auth.Role]string
	// tokenFile is the token file the tokens are in; opts what the server was made
	// of.
	tokenFile string
	opts      Options
	client    *http.Client
}

func newEnv(t testing.TB, set ...func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	store, err := ledger.Open(ctx, filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rs, err := classifier.Load(rules.FS)
	if err != nil {
		t.Fatal(err)
	}
	cl := classifier.New(rs, classifier.Options{MinConfidence: 0.5})
	m, err := models.Default()
	if err != nil {
		t.Fatal(err)
	}
	cat := failure.DefaultCatalogue()
	rec := recommender.New(cl, m, recommender.Options{Catalogue: cat, MaxMemoryBytes: 512 << 30, MaxCPUMillis: 64000, MaxGPUs: 8})
	tokenFile := filepath.Join(dir, auth.StoreFile)
	ts, err := auth.OpenStore(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[auth.Role]string{}
	for name, role := range map[string]auth.Role{"ada": auth.Admin, "val": auth.Approver, "vic": auth.Viewer} {
		if tokens[role], err = ts.Create(name, role); err != nil {
			t.Fatal(err)
		}
	}
	authn := auth.NewAuthenticator(ts.Tokens())
	reg, err := registry.New(registry.Options{Ledger: store, Catalogue: cat, InUse: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.EnsureDefault(ctx, "autofix"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	o := Options{Ledger: store, Recommender: rec, Classifier: cl, Models: m, ModelRegistry: reg, Auth: authn, RatePerSecond: 1000, Burst: 1000}
	for _, f := range set {
		f(&o)
	}
	if o.Review == nil {
		o.Review = newReview(t, store)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: s, url: srv.URL, auth: authn, store: store, rec: rec, tokens: tokens, tokenFile: tokenFile, opts: o,
		client: srv.Client()}
}

// newReview is the review service of the tests: the default policy and catalogue,
// and a largest node of 512 GiB, 64 CPUs and 8 GPUs.
func newReview(t testing.TB, store review.Ledger) *review.Service {
	t.Helper()
	pol := policy.Default()
	rev, err := review.New(review.Options{Ledger: store, Policy: &pol, Catalogue: failure.DefaultCatalogue(),
		Largest: func() failure.Resources { return failure.Resources{MemoryBytes: 512 << 30, CPUMillis: 64000, GPU: 8} }})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// call makes a request as role ("" sends no token), checks the response against
// docs/openapi.yaml, and returns the status and body.
func (e *env) call(method, path string, role auth.Role, body string) (int, []byte, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	checkSpec(e.t, req, []byte(body), resp.StatusCode, resp.Header, b)
	return resp.StatusCode, b, resp.Header
}

// apiError decodes the error shape, failing if the body does not have it.
func apiError(t *testing.T, b []byte) Error {
	t.Helper()
	var out struct {
		Error *Error `json:"error"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Error == nil || out.Error.Code == "" || out.Error.Message == "" {
		t.Fatalf("not the error shape {\"error\":{\"code\",\"message\"}}: %s (%v)", b, err)
	}
	return *out.Error
}

func wantError(t *testing.T, status int, b []byte, wantStatus int, wantField string) Error {
	t.Helper()
	e := apiError(t, b)
	if status != wantStatus || e.Field != wantField {
		t.Errorf("status %d field %q (%s); want %d field %q", status, e.Field, e.Message, wantStatus, wantField)
	}
	return e
}

// pending records the event as the policy would have when it keeps a fix for review.
func (e *env) pending(evJSON string) ledger.Remediation {
	e.t.Helper()
	ev, err := failure.Decode([]byte(evJSON))
	if err != nil {
		e.t.Fatal(err)
	}
	rec := e.rec.Recommend(&ev, nil)
	if len(rec.Options) == 0 {
		e.t.Fatalf("the recommender gave %s no options", ev.ID)
	}
	ctx := context.Background()
	if _, err := e.store.Record(ctx, []ledger.Entry{{EventID: ev.ID, Event: &ev, ChainID: ev.Job.Namespace + "/" + ev.Job.Name,
		Recommendation: &rec, State: ledger.PendingReview, Reason: "review: the test keeps it", Actor: "policy"}}); err != nil {
		e.t.Fatal(err)
	}
	r, err := e.store.Get(ctx, ev.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func TestAuthenticationAndRolesComeFirst(t *testing.T) {
	e := newEnv(t)
	status, b, h := e.call("GET", "/v1/remediations", "", "")
	wantError(t, status, b, http.StatusUnauthorized, "")
	if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: Bearer (%q)", h.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest("GET", e.url+"/v1/remediations", nil)
	req.Header.Set("Authorization", "Bearer afx_not-a-token")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unknown token: %d, want 401", resp.StatusCode)
	}
	// A viewer approving anything is forbidden, whether it exists or not.
	status, b, _ = e.call("POST", "/v1/remediations/no-such-id/approve", auth.Viewer, `{}`)
	wantError(t, status, b, http.StatusForbidden, "")
	r := e.pending(oomEvent)
	status, b, _ = e.call("POST", "/v1/remediations/"+r.EventID+"/approve", auth.Viewer, `{}`)
	wantError(t, status, b, http.StatusForbidden, "")
	// An approver gets 404 for what does not exist.
	status, b, _ = e.call("POST", "/v1/remediations/no-such-id/approve", auth.Approver, `{}`)
	wantError(t, status, b, http.StatusNotFound, "")
	// Rules, policy: admin only.
	status, b, _ = e.call("POST", "/v1/policy/pause", auth.Approver, `{"paused":true,"reason":"x"}`)
	wantError(t, status, b, http.StatusForbidden, "")
	status, b, _ = e.call("POST", "/v1/rules:test", auth.Viewer, `{}`)
	wantError(t, status, b, http.StatusForbidden, "")
	// Health is open.
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _, _ := e.call("GET", p, "", ""); status != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", p, status)
		}
	}
}

func TestRecommendationsAreReadOnly(t *testing.T) {
	e := newEnv(t)
	status, b, _ := e.call("POST", "/v1/recommendations", auth.Viewer, oomEvent)
	if status != http.StatusOK {
		t.Fatalf("POST /v1/recommendations: %d %s", status, b)
	}
	var rec failure.Recommendation
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	chosen, ok := rec.ChosenOption()
	if rec.Classification.Category != failure.OOMMemory || !ok || chosen.Resources.MemoryBytes <= 16<<30 || len(rec.Classification.Evidence) == 0 {
		t.Errorf("recommendation: %s, chosen %+v, evidence %v; want oom_memory with more than 16Gi", rec.Classification.Category, chosen.Resources, rec.Classification.Evidence)
	}
	pareto := 0
	for _, o := range rec.Options {
		if o.Pareto {
			pareto++
		}
	}
	if pareto == 0 || rec.Explanation == "" {
		t.Errorf("no Pareto flags (%d) or no explanation (%q)", pareto, rec.Explanation)
	}
	counts, err := e.store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for st, n := range counts {
		if n != 0 {
			t.Errorf("a recommendation recorded %d remediation(s) in state %s", n, st)
		}
	}

	// A bad event names the field.
	bad := strings.Replace(oomEvent, `"memory":"16Gi"`, `"memory":"16 GB"`, 1)
	status, b, _ = e.call("POST", "/v1/recommendations", auth.Viewer, bad)
	wantError(t, status, b, http.StatusBadRequest, "job.resources.memory")

	// Too large a body is a 413.
	huge := strings.Replace(oomEvent, `"epoch 3 step 1200 loss 1.92"`, `"`+strings.Repeat("x", 2<<20)+`"`, 1)
	status, b, _ = e.call("POST", "/v1/recommendations", auth.Viewer, huge)
	wantError(t, status, b, http.StatusRequestEntityTooLarge, "")

	// A batch answers each event, the bad one with its field.
	batch := `{"events":[` + oomEvent + `,` + bad + `]}`
	status, b, _ = e.call("POST", "/v1/recommendations:batch", auth.Viewer, batch)
	if status != http.StatusOK {
		t.Fatalf("batch: %d %s", status, b)
	}
	var out struct{ Results []BatchItem }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 2 || out.Results[0].Recommendation == nil || out.Results[1].Error == nil ||
		out.Results[1].Error.Field != "events[1].job.resources.memory" {
		t.Errorf("batch results: %s", b)
	}
	status, b, _ = e.call("POST", "/v1/recommendations:batch", auth.Viewer, `{"events":[]}`)
	wantError(t, status, b, http.StatusBadRequest, "events")
	status, b, _ = e.call("POST", "/v1/recommendations:batch", auth.Viewer, `{"events":[],"extra":1}`)
	wantError(t, status, b, http.StatusBadRequest, "extra")
}

func TestApproveAndRejectAreAuditedAndChecked(t *testing.T) {
	e := newEnv(t)
	r := e.pending(oomEvent)
	path := "/v1/remediations/" + r.EventID

	// An option off the Pareto front, resources over the cost cap, an unknown field.
	off := -1
	for i, o := range r.Recommendation.Options {
		if !o.Pareto && i != r.Recommendation.Chosen {
			off = i
			break
		}
	}
	if off >= 0 {
		status, b, _ := e.call("POST", path+"/approve", auth.Approver, fmt.Sprintf(`{"option":%d}`, off))
		wantError(t, status, b, http.StatusBadRequest, "option")
	}
	status, b, _ := e.call("POST", path+"/approve", auth.Approver, `{"resources":{"memory":"400Gi"}}`)
	wantError(t, status, b, http.StatusBadRequest, "resources")
	status, b, _ = e.call("POST", path+"/approve", auth.Approver, `{"optoin":1}`)
	wantError(t, status, b, http.StatusBadRequest, "optoin")

	// Approve with an edit within the caps.
	status, b, _ = e.call("POST", path+"/approve", auth.Approver, `{"reason":"24Gi is what it peaks at","resources":{"memory":"24Gi"}}`)
	if status != http.StatusOK {
		t.Fatalf("approve: %d %s", status, b)
	}
	var v RemediationView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.State != ledger.Approved || v.Retry == nil || v.Retry.Resources.MemoryBytes != 24<<30 || v.Retry.Job != "resnet50-train-7-af2" || v.Retry.Number != 2 {
		t.Errorf("after approve: state %s, retry %+v; want approved, attempt 2 resnet50-train-7-af2 with 24Gi", v.State, v.Retry)
	}
	last := v.Audit[len(v.Audit)-1]
	if last.Actor != "val" || last.Action != "approve" || !strings.Contains(last.Detail, "memory=24.0Gi") || !strings.Contains(last.Detail, "peaks") {
		t.Errorf("audit: %+v; want val's approval with the edit and the reason", last)
	}
	// Approving again is an illegal state change.
	status, b, _ = e.call("POST", path+"/approve", auth.Approver, `{}`)
	wantError(t, status, b, http.StatusConflict, "")
	status, b, _ = e.call("POST", path+"/reject", auth.Approver, `{"reason":"changed my mind"}`)
	wantError(t, status, b, http.StatusConflict, "")

	// Reject needs a reason.
	r2 := e.pending(strings.Replace(oomEvent, "ev-oom-1", "ev-oom-2", 1))
	status, b, _ = e.call("POST", "/v1/remediations/"+r2.EventID+"/reject", auth.Approver, `{"reason":"  "}`)
	wantError(t, status, b, http.StatusBadRequest, "reason")
	status, b, _ = e.call("POST", "/v1/remediations/"+r2.EventID+"/reject", auth.Admin, `{"reason":"the data loader leaks; fix the code"}`)
	if status != http.StatusOK {
		t.Fatalf("reject: %d %s", status, b)
	}
	got, err := e.store.Get(context.Background(), r2.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ledger.Rejected || got.Audit[len(got.Audit)-1].Actor != "ada" {
		t.Errorf("after reject: %s by %s", got.State, got.Audit[len(got.Audit)-1].Actor)
	}

	// The whole chain is there.
	status, b, _ = e.call("GET", path, auth.Viewer, "")
	if status != http.StatusOK {
		t.Fatalf("get: %d %s", status, b)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Event == nil || v.Recommendation == nil || len(v.Attempts) != 1 || len(v.Audit) < 4 {
		t.Errorf("GET %s: event %v, recommendation %v, %d attempts, %d audit rows", path, v.Event != nil, v.Recommendation != nil, len(v.Attempts), len(v.Audit))
	}
	status, b, _ = e.call("GET", "/v1/remediations/nope", auth.Viewer, "")
	wantError(t, status, b, http.StatusNotFound, "")
}

func TestListFiltersAndPages(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.pending(strings.Replace(oomEvent, "ev-oom-1", fmt.Sprintf("ev-%d", i), 1))
	}
	status, b, _ := e.call("GET", "/v1/remediations?state=pending_review&limit=2", auth.Viewer, "")
	if status != http.StatusOK {
		t.Fatalf("list: %d %s", status, b)
	}
	seen := map[string]bool{}
	var page RemediationPage
	for pages := 0; ; pages++ {
		page = RemediationPage{}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			if seen[it.ID] || it.State != ledger.PendingReview {
				t.Errorf("item %s (%s) twice or in the wrong state", it.ID, it.State)
			}
			seen[it.ID] = true
		}
		if page.Next == "" || pages > 5 {
			break
		}
		_, b, _ = e.call("GET", "/v1/remediations?state=pending_review&limit=2&after="+page.Next, auth.Viewer, "")
	}
	if len(seen) != 5 {
		t.Errorf("paging saw %d remediations, want 5", len(seen))
	}
	_, b, _ = e.call("GET", "/v1/remediations?state=succeeded", auth.Viewer, "")
	page = RemediationPage{}
	if err := json.Unmarshal(b, &page); err != nil || len(page.Items) != 0 {
		t.Errorf("state=succeeded: %s", b)
	}
	status, b, _ = e.call("GET", "/v1/remediations?state=done", auth.Viewer, "")
	wantError(t, status, b, http.StatusBadRequest, "state")
	status, b, _ = e.call("GET", "/v1/remediations?since=yesterday", auth.Viewer, "")
	wantError(t, status, b, http.StatusBadRequest, "since")
	status, b, _ = e.call("GET", "/v1/remediations?limit=0", auth.Viewer, "")
	wantError(t, status, b, http.StatusBadRequest, "limit")
	status, b, _ = e.call("GET", "/v1/remediations?nmespace=ml", auth.Viewer, "")
	wantError(t, status, b, http.StatusBadRequest, "nmespace")

	status, b, _ = e.call("GET", "/v1/jobs/ml/resnet50-train-7/history", auth.Viewer, "")
	var h JobHistory
	if status != http.StatusOK || json.Unmarshal(b, &h) != nil || len(h.Remediations) != 5 || len(h.Outcomes) != 5 || h.Template != "resnet50-train" {
		t.Errorf("job history: %d %s", status, b)
	}
	status, b, _ = e.call("GET", "/v1/jobs/ml/never-failed/history", auth.Viewer, "")
	wantError(t, status, b, http.StatusNotFound, "")
}

func TestRulesModelsAndTheKillSwitch(t *testing.T) {
	e := newEnv(t)
	status, b, _ := e.call("GET", "/v1/rules", auth.Viewer, "")
	var rs struct {
		Rules []RuleView `json:"rules"`
	}
	if status != http.StatusOK || json.Unmarshal(b, &rs) != nil || len(rs.Rules) < 10 {
		t.Errorf("GET /v1/rules: %d, %d rules", status, len(rs.Rules))
	}
	candidate := `rules:
  - id: my-oom
    description: the kernel killed the container at its memory limit
    category: oom_memory
    retryable: true
    action: increase_memory
    confidence: 0.9
    priority: 500
    expr: reason == "OOMKilled"
`
	body, _ := json.Marshal(RulesTestRequest{Files: map[string]string{"mine.yaml": candidate}, Event: json.RawMessage(oomEvent)})
	status, b, _ = e.call("POST", "/v1/rules:test", auth.Admin, string(body))
	var res RulesTestResult
	if status != http.StatusOK || json.Unmarshal(b, &res) != nil || res.Classification.Category != failure.OOMMemory ||
		len(res.Classification.Rules) != 1 || res.Classification.Rules[0] != "my-oom" {
		t.Errorf("rules:test: %d %s", status, b)
	}
	body, _ = json.Marshal(RulesTestRequest{Files: map[string]string{"mine.yaml": strings.Replace(candidate, `reason == "OOMKilled"`, `reason === 1`, 1)},
		Event: json.RawMessage(oomEvent)})
	status, b, _ = e.call("POST", "/v1/rules:test", auth.Admin, string(body))
	wantError(t, status, b, http.StatusBadRequest, "files.mine.yaml")

	status, b, _ = e.call("GET", "/v1/models", auth.Viewer, "")
	if status != http.StatusOK || !bytes.Contains(b, []byte(`"inUse":true`)) {
		t.Errorf("GET /v1/models: %d %s", status, b)
	}

	status, b, _ = e.call("POST", "/v1/policy/pause", auth.Admin, `{"paused":true}`)
	wantError(t, status, b, http.StatusBadRequest, "reason")
	status, b, _ = e.call("POST", "/v1/policy/pause", auth.Admin, `{"paused":true,"reason":"bad rollout of the scheduler"}`)
	if status != http.StatusOK {
		t.Fatalf("pause: %d %s", status, b)
	}
	_, b, _ = e.call("GET", "/v1/policy/pause", auth.Viewer, "")
	var p PauseView
	if err := json.Unmarshal(b, &p); err != nil || !p.Paused || p.By != "ada" || p.Reason != "bad rollout of the scheduler" {
		t.Errorf("pause state: %s", b)
	}
	if paused, err := e.store.Paused(context.Background()); err != nil || !paused {
		t.Errorf("the ledger's kill switch: %v, %v", paused, err)
	}
	status, b, _ = e.call("POST", "/v1/policy/pause", auth.Admin, `{"paused":false}`)
	if status != http.StatusOK || !bytes.Contains(b, []byte(`"paused":false`)) {
		t.Errorf("resume: %d %s", status, b)
	}
	// Pipelines need a cluster.
	status, b, _ = e.call("GET", "/v1/pipelines", auth.Viewer, "")
	wantError(t, status, b, http.StatusServiceUnavailable, "")
}

func TestRateLimitAndErrorShapes(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RatePerSecond, o.Burst = 1, 3 })
	var codes []int
	for range 6 {
		status, b, h := e.call("GET", "/v1/models", auth.Viewer, "")
		codes = append(codes, status)
		if status == http.StatusTooManyRequests {
			apiError(t, b)
			if h.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
	}
	if codes[0] != 200 || codes[5] != http.StatusTooManyRequests {
		t.Errorf("statuses of 6 quick requests at 1/s, burst 3: %v", codes)
	}
	// Unknown endpoints and secure headers.
	status, b, h := e.call("GET", "/healthz", "", "")
	if status != 200 || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Request-Id") == "" {
		t.Errorf("headers: %v (%s)", h, b)
	}
}

func TestMetricsNeedAViewerUnlessOpen(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.url+"/metrics", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401", resp.StatusCode)
	}
	e.call("POST", "/v1/recommendations", auth.Viewer, oomEvent)
	status, b, _ := e.call("GET", "/metrics", auth.Viewer, "")
	for _, want := range []string{`autofix_classifications_total{category="oom_memory",source="api"} 1`,
		`autofix_http_requests_total{code="200",method="POST",route="/v1/recommendations"} 1`, "autofix_recommendation_duration_seconds_bucket"} {
		if status != 200 || !bytes.Contains(b, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	open := newEnv(t, func(o *Options) { o.OpenMetrics = true })
	resp, err = open.client.Get(open.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("open /metrics: %d", resp.StatusCode)
	}
}

func TestRequestLogHasNoTokens(t *testing.T) {
	var buf bytes.Buffer
	log, read := newTestLogger(&buf)
	e := newEnv(t, func(o *Options) { o.Log = log })
	e.call("GET", "/v1/remediations", auth.Admin, "")
	e.call("POST", "/v1/recommendations", auth.Viewer, oomEvent)
	time.Sleep(50 * time.Millisecond) // the log line follows the response
	logs := read()
	for role, tok := range e.tokens {
		if strings.Contains(logs, tok) {
			t.Errorf("the %s token is in the log", role)
		}
	}
	if !strings.Contains(logs, "requestId=") || !strings.Contains(logs, "who=ada") {
		t.Errorf("request log lacks the request id or who: %s", logs)
	}
	if strings.Contains(logs, "epoch 3 step") {
		t.Error("a request body is in the log")
	}
}

func TestBodiesMustBeJSON(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("POST", e.url+"/v1/recommendations", strings.NewReader(oomEvent))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+e.tokens[auth.Viewer])
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	checkSpec(t, req, []byte(oomEvent), resp.StatusCode, resp.Header, b)
	wantError(t, resp.StatusCode, b, http.StatusUnsupportedMediaType, "Content-Type")

	// A rejected message's id holds slashes: it is reached escaped.
	ctx := context.Background()
	id := "kafka:autofix.failures/0/42"
	if _, err := e.store.Record(ctx, []ledger.Entry{{EventID: id, State: ledger.Rejected, Error: "job.name: required", Actor: "intake"}}); err != nil {
		t.Fatal(err)
	}
	status, b, _ := e.call("GET", "/v1/remediations/"+strings.ReplaceAll(id, "/", "%2F"), auth.Viewer, "")
	var v RemediationView
	if status != http.StatusOK || json.Unmarshal(b, &v) != nil || v.ID != id || v.Error != "job.name: required" {
		t.Errorf("GET the rejected message: %d %s", status, b)
	}
}

func TestFixRateAndSpendMetrics(t *testing.T) {
	m := NewMetrics()
	m.Remediations(map[ledger.State]int{ledger.Succeeded: 3, ledger.Failed: 1, ledger.PendingReview: 2})
	m.Finished(failure.OOMMemory, true, &failure.Option{RunCost: 2, CostMultiple: 1.25})
	m.Finished(failure.OOMMemory, false, &failure.Option{RunCost: 5, CostMultiple: 2})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"autofix_fix_rate 0.75", `autofix_remediations{state="pending_review"} 2`,
		"autofix_retry_cost_dollars_total 2", "autofix_retry_original_cost_dollars_total 1.6",
		`autofix_remediation_outcomes_total{category="oom_memory",outcome="failed"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

const cudaEvent = `{"id":"ev-cuda-1","source":"kubernetes","job":{"namespace":"ml","name":"llama-ft-3","template":"llama-ft","kind":"training",` +
	`"resources":{"cpu":"16","memory":"128Gi","gpu":8,"gpuType":"nvidia-h100-80gb"},"params":{"micro_batch_size":"16","grad_accum_steps":"1"},` +
	`"tunables":{"micro_batch_size":{"role":"micro_batch","min":1,"max":64},"grad_accum_steps":{"role":"grad_accum","min":1,"max":64}}},` +
	`"failure":{"reason":"Error","exitCode":1,"durationSeconds":412,"logTail":"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."}}`

func TestApproverEditsStayWithinWhatTheJobAndThePolicyAllow(t *testing.T) {
	e := newEnv(t)
	r := e.pending(cudaEvent)
	path := "/v1/remediations/" + r.EventID + "/approve"
	for _, c := range []struct{ body, field string }{
		{`{"resources":{"gpu":64}}`, "resources.gpu"},                            // more than a node has
		{`{"resources":{"gpu":2,"gpuType":"nvidia-b200"}}`, "resources.gpuType"}, // not in the catalogue
		{`{"params":{"micro_batch_size":"1000"}}`, "params.micro_batch_size"},    // over its declared max
		{`{"params":{"micro_batch_size":"8; rm -rf /"}}`, "params.micro_batch_size"},
		{`{"params":{"learning_rate":"0.1"}}`, "params.learning_rate"}, // not a tunable
	} {
		status, b, _ := e.call("POST", path, auth.Approver, c.body)
		wantError(t, status, b, http.StatusBadRequest, c.field)
	}
	status, b, _ := e.call("POST", path, auth.Approver, `{"params":{"micro_batch_size":"4","grad_accum_steps":"4"}}`)
	var v RemediationView
	if status != http.StatusOK || json.Unmarshal(b, &v) != nil || v.Retry == nil || v.Retry.Params["micro_batch_size"] != "4" {
		t.Errorf("approve with params in range: %d %s", status, b)
	}

	// A GPU count without a model cannot be priced.
	e2 := newEnv(t)
	r2 := e2.pending(oomEvent)
	status, b, _ = e2.call("POST", "/v1/remediations/"+r2.EventID+"/approve", auth.Approver, `{"resources":{"gpu":1}}`)
	wantError(t, status, b, http.StatusBadRequest, "resources.gpuType")
}

func TestFailedAuthenticationsAreRateLimited(t *testing.T) {
	e := newEnv(t, noRefill)
	saw429 := false
	for range 40 {
		req, _ := http.NewRequest("GET", e.url+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer afx_guess")
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		saw429 = saw429 || resp.StatusCode == http.StatusTooManyRequests
	}
	if !saw429 {
		t.Error("40 quick bad tokens from one address: never a 429")
	}
	// A good token from the same address still works.
	if status, _, _ := e.call("GET", "/v1/models", auth.Viewer, ""); status != http.StatusOK {
		t.Errorf("a good token after the guesses: %d", status)
	}
}

func TestChunkedBodiesOverTheLimitAre413(t *testing.T) {
	e := newEnv(t)
	body := io.MultiReader(strings.NewReader(`{"paused":true,"reason":"`), strings.NewReader(strings.Repeat("x", 2<<20)), strings.NewReader(`"}`))
	req, _ := http.NewRequest("POST", e.url+"/v1/policy/pause", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.tokens[auth.Admin])
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if req.ContentLength != 0 && req.ContentLength != -1 {
		t.Fatalf("the request was not chunked (length %d)", req.ContentLength)
	}
	wantError(t, resp.StatusCode, b, http.StatusRequestEntityTooLarge, "")
}

func TestMetricMethodsAreBounded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.OpenMetrics = true })
	for _, m := range []string{"FOO", "BAR", "BAZ"} {
		req, _ := http.NewRequest(m, e.url+"/healthz", nil)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	resp, err := e.client.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if strings.Contains(string(b), `method="FOO"`) || !strings.Contains(string(b), `method="OTHER"`) {
		t.Error("a made-up method became a metric label")
	}
}

func TestReviewPageSessionsEndWithTheirToken(t *testing.T) {
	e := newEnv(t)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(e.url+"/ui/login", url.Values{"token": {e.tokens[auth.Approver]}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	get := func() int {
		resp, err := client.Get(e.url + "/ui/")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("the queue after login: %d", code)
	}
	// The history page: the savings so far, and a fix approved through the API.
	r := e.pending(oomEvent)
	if status, b, _ := e.call("POST", "/v1/remediations/"+r.EventID+"/approve", auth.Approver, `{}`); status != http.StatusOK {
		t.Fatalf("approve: %d %s", status, b)
	}
	resp, err = client.Get(e.url + "/ui/history")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Savings so far") ||
		!strings.Contains(string(page), "resnet50-train-7") || !strings.Contains(string(page), "resnet50-train-7-af2") {
		t.Errorf("history page: %d, lacks the savings or the approved fix", resp.StatusCode)
	}
	e.auth.Set(nil) // every token revoked
	if code := get(); code != http.StatusSeeOther {
		t.Errorf("the queue after the token was revoked: %d, want a redirect to the login", code)
	}

	// Posts are small forms: no big bodies, no multipart.
	resp, err = client.PostForm(e.url+"/ui/login", url.Values{"token": {strings.Repeat("x", 100<<10)}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 100 KiB login form: %d, want 413", resp.StatusCode)
	}
	resp, err = client.Post(e.url+"/ui/login", "multipart/form-data; boundary=x", strings.NewReader("--x--"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a multipart login: %d, want 415", resp.StatusCode)
	}
}

// BenchmarkRecommendHTTP is POST /v1/recommendations through the whole server:
// authentication, rate limiter, decoding, history lookup, recommendation, JSON.
func BenchmarkRecommendHTTP(b *testing.B) {
	e := newEnv(b, func(o *Options) { o.RatePerSecond, o.Burst = 1e9, 1<<30 })
	body := []byte(oomEvent)
	for b.Loop() {
		req, _ := http.NewRequest("POST", e.url+"/v1/recommendations", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.tokens[auth.Viewer])
		resp, err := e.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
