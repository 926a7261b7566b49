package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/registry"
)

// TestShadowEvaluationAPI: only admins start and stop a shadow evaluation; the
// registry's listing says which version is evaluated, everywhere and here; the
// recommendations carry the candidate's view once the replica evaluates it; and the
// report scores the recorded decisions against their outcomes.
func TestShadowEvaluationAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg := e.opts.ModelRegistry.(*registry.Registry)
	v, err := reg.Register(ctx, constantModels(t, 1), registry.Registration{Actor: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []auth.Role{auth.Viewer, auth.Approver} {
		status, b, _ := e.call("POST", "/v1/models/2:shadow", role, `{}`)
		wantError(t, status, b, http.StatusForbidden, "")
		status, b, _ = e.call("POST", "/v1/models:stopShadow", role, `{}`)
		wantError(t, status, b, http.StatusForbidden, "")
	}
	for _, tc := range []struct {
		path, body string
		status     int
		field      string
	}{
		{"/v1/models:stopShadow", `{}`, http.StatusConflict, ""},
		{"/v1/models/1:shadow", `{}`, http.StatusConflict, ""},
		{"/v1/models/9:shadow", `{}`, http.StatusNotFound, ""},
		{"/v1/models/x:shadow", `{}`, http.StatusBadRequest, "version"},
		{"/v1/models/2:shadow", `{"reason":7}`, http.StatusBadRequest, "reason"},
		{"/v1/models/2:shadow", `{"force":true}`, http.StatusBadRequest, "force"},
	} {
		status, b, _ := e.call("POST", tc.path, auth.Admin, tc.body)
		wantError(t, status, b, tc.status, tc.field)
	}
	status, b, _ := e.call("POST", "/v1/models/2:shadow", auth.Admin, `{"reason":"trained on march"}`)
	var st ShadowView
	if status != http.StatusOK || json.Unmarshal(b, &st) != nil || st.Version != v.Version || st.By != "ada" ||
		st.Reason != "trained on march" || st.At == nil {
		t.Fatalf("POST :shadow = %d %s; want version 2 by ada", status, b)
	}
	status, b, _ = e.call("POST", "/v1/models/2:shadow", auth.Admin, `{}`)
	wantError(t, status, b, http.StatusConflict, "")

	var list ModelList
	if _, b, _ = e.call("GET", "/v1/models", auth.Viewer, ""); json.Unmarshal(b, &list) != nil || list.Shadow.Version != 2 ||
		list.Shadow.InUse != 0 {
		t.Errorf("GET /v1/models before a poll: %s; want shadow version 2, none here yet", b)
	}
	if err := reg.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, b, _ = e.call("GET", "/v1/models", auth.Viewer, ""); json.Unmarshal(b, &list) != nil || list.Shadow.InUse != 2 {
		t.Errorf("GET /v1/models after a poll: %s; want version 2 evaluated here", b)
	}
	sh := reg.Shadowed()
	e.rec.SetShadow(sh.Version, sh.Models) // what the service's OnShadow does
	status, b, _ = e.call("POST", "/v1/recommendations", auth.Viewer, oomEvent)
	var rec failure.Recommendation
	if status != http.StatusOK || json.Unmarshal(b, &rec) != nil || rec.Shadow == nil || rec.Shadow.Version != 2 ||
		rec.Shadow.PSuccess == 0 {
		t.Errorf("POST /v1/recommendations = %d %s; want the candidate's shadow", status, b)
	}

	// One decision recorded with its shadow, and its attempt's outcome.
	now := time.Now()
	ev := &failure.Event{ID: "ev-1", Time: now, Source: "watcher", Job: failure.Job{Namespace: "ml", Name: "train-1", Template: "train",
		Kind: failure.Training, Attempt: 1, Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
	opt := failure.Option{Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 12 << 30}, PSuccess: 0.9, ExpectedCost: 3}
	r := &failure.Recommendation{EventID: "ev-1", Classification: failure.Classification{Category: failure.OOMMemory, Retryable: true},
		Retry: true, Options: []failure.Option{opt}, Chosen: 0, ModelRegistryVersion: 1,
		Shadow: &failure.Shadow{Version: 2, PSuccess: 0.7, Retry: true, Option: &opt}}
	if _, err := e.store.Record(ctx, []ledger.Entry{{EventID: "ev-1", ReceivedAt: now, Event: ev, ChainID: "c1", Recommendation: r,
		State: ledger.Approved, Actor: "policy", Attempt: &ledger.Attempt{Number: 2, JobName: "train-1-af2", Resources: opt.Resources,
			Option: &opt}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Transition(ctx, "ev-1", ledger.Approved, ledger.Submitted, "dispatcher", "", now); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Finish(ctx, "ev-1", ledger.Succeeded, failure.Outcome{Succeeded: true, Cost: 2.5}, "watcher", "", now); err != nil {
		t.Fatal(err)
	}
	status, b, _ = e.call("GET", "/v1/models/2/shadow", auth.Viewer, "")
	var report ShadowReportView
	if status != http.StatusOK || json.Unmarshal(b, &report) != nil || report.Decisions != 1 || report.Active.N != 1 ||
		report.Candidate.N != 1 || report.ActiveVersion != 1 || report.Changes.Total != 0 {
		t.Errorf("GET /v1/models/2/shadow = %d %s; want one decision scored, unchanged", status, b)
	}
	status, b, _ = e.call("GET", "/v1/models/9/shadow", auth.Viewer, "")
	wantError(t, status, b, http.StatusNotFound, "")

	status, b, _ = e.call("POST", "/v1/models:stopShadow", auth.Admin, `{"reason":"enough"}`)
	if status != http.StatusOK || json.Unmarshal(b, &st) != nil || st.Version != 0 || st.Reason != "enough" {
		t.Errorf("POST :stopShadow = %d %s; want version 0", status, b)
	}
}
