package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/registry"
)

// constantModels are the default models with P(success) sigmoid(w0) whatever the
// retry, saved.
func constantModels(t *testing.T, w0 float64) []byte {
	t.Helper()
	m, err := models.Default()
	if err != nil {
		t.Fatal(err)
	}
	m.Name, m.Success = "constant", &models.Logistic{Weights: []float64{w0, 0}}
	data, err := m.Save()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestModelRegistryAPI: viewers list the registry and read a version with its
// artifact; only admins promote and roll back; a promotion whose gates fail is a
// 409 saying which, unless forced with a reason; every change is listed with its
// figures, and the replica runs the active version once it has polled.
func TestModelRegistryAPI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg := e.opts.ModelRegistry.(*registry.Registry)
	v, err := reg.Register(ctx, constantModels(t, 1), registry.Registration{Actor: "ada", Note: "a constant"})
	if err != nil {
		t.Fatal(err)
	}

	status, b, _ := e.call("GET", "/v1/models", auth.Viewer, "")
	var list ModelList
	if status != http.StatusOK || json.Unmarshal(b, &list) != nil {
		t.Fatalf("GET /v1/models: %d %s", status, b)
	}
	if len(list.Models) != 2 || list.Active != 1 || list.InUse.Version != 1 || !list.Models[1].Active || !list.Models[1].InUse ||
		list.Models[0].Version != v.Version || list.Models[0].Parent != 1 || list.Models[0].Content != nil || len(list.Promotions) != 1 {
		t.Errorf("GET /v1/models = %s; want versions 2 and 1, 1 active and in use, one promotion", b)
	}
	status, b, _ = e.call("GET", "/v1/models/2", auth.Viewer, "")
	var one ModelVersionView
	if status != http.StatusOK || json.Unmarshal(b, &one) != nil || one.SHA256 != v.SHA256 || one.Metrics == nil ||
		!strings.Contains(string(one.Content), `"name":"constant"`) || one.Metrics.Reliability[1].Lo != 0.1 ||
		one.Metrics.Reliability[1].Hi != 0.2 {
		t.Errorf("GET /v1/models/2 = %d %s; want the version with its metrics (the reliability table's bins with their edges) and artifact", status, b)
	}
	for _, tc := range []struct {
		path   string
		status int
		field  string
	}{
		{"/v1/models/9", http.StatusNotFound, ""},
		{"/v1/models/two", http.StatusBadRequest, "version"},
		{"/v1/models/0", http.StatusBadRequest, "version"},
		{"/v1/models?limit=0", http.StatusBadRequest, "limit"},
	} {
		status, b, _ := e.call("GET", tc.path, auth.Viewer, "")
		wantError(t, status, b, tc.status, tc.field)
	}

	for _, role := range []auth.Role{auth.Viewer, auth.Approver} {
		status, b, _ := e.call("POST", "/v1/models/2:promote", role, `{"force":true,"reason":"x"}`)
		wantError(t, status, b, http.StatusForbidden, "")
		status, b, _ = e.call("POST", "/v1/models/1:rollback", role, `{"reason":"x"}`)
		wantError(t, status, b, http.StatusForbidden, "")
	}
	status, b, _ = e.call("POST", "/v1/models/2:promote", auth.Admin, `{}`)
	wantError(t, status, b, http.StatusConflict, "")
	if msg := apiError(t, b).Message; !strings.Contains(msg, "0 outcomes scored") || !strings.Contains(msg, "force") {
		t.Errorf("the refusal says %q; want the gate that failed, and that an admin may force it", msg)
	}
	status, b, _ = e.call("POST", "/v1/models/2:promote", auth.Admin, `{"force":true}`)
	wantError(t, status, b, http.StatusBadRequest, "reason")
	status, b, _ = e.call("POST", "/v1/models/2:promote", auth.Admin, `{"force":true,"reason":"`+strings.Repeat("r", 1001)+`"}`)
	wantError(t, status, b, http.StatusBadRequest, "reason")
	status, b, _ = e.call("POST", "/v1/models/2:promote", auth.Admin, `{"force":true,"reason":"no outcomes yet","dryRun":true}`)
	wantError(t, status, b, http.StatusBadRequest, "dryRun")
	status, b, _ = e.call("POST", "/v1/models/2:promote", auth.Admin, `{"force":true,"reason":"no outcomes yet"}`)
	var p ModelPromotionView
	if status != http.StatusOK || json.Unmarshal(b, &p) != nil || p.Action != ledger.ModelForce || p.From != 1 || p.To != 2 ||
		p.By != "ada" || p.Gates == nil || len(p.Gates.Failed) == 0 {
		t.Fatalf("forced promotion: %d %s; want force 1 -> 2 by ada with the failed gates", status, b)
	}
	status, b, _ = e.call("POST", "/v1/models/2:promote", auth.Admin, `{"force":true,"reason":"again"}`)
	wantError(t, status, b, http.StatusConflict, "")

	if err := reg.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	_, b, _ = e.call("GET", "/v1/models", auth.Viewer, "")
	if err := json.Unmarshal(b, &list); err != nil || list.Active != 2 || list.InUse.Version != 2 || list.InUse.Name != "constant" ||
		len(list.Promotions) != 2 || list.Promotions[0].Reason != "no outcomes yet" {
		t.Errorf("after the promotion and a poll: %s; want 2 active and in use, the forced promotion listed first", b)
	}

	status, b, _ = e.call("POST", "/v1/models/2:rollback", auth.Admin, `{"reason":"x"}`)
	wantError(t, status, b, http.StatusBadRequest, "version")
	status, b, _ = e.call("POST", "/v1/models/1:rollback", auth.Admin, `{}`)
	wantError(t, status, b, http.StatusBadRequest, "reason")
	status, b, _ = e.call("POST", "/v1/models/1:rollback", auth.Admin, `{"reason":"it retries everything at the same size"}`)
	if status != http.StatusOK || json.Unmarshal(b, &p) != nil || p.Action != ledger.ModelRollback || p.From != 2 || p.To != 1 {
		t.Errorf("rollback: %d %s; want rollback 2 -> 1", status, b)
	}
}

// TestModelsWithoutARegistry: a server without one names the models it runs, lists
// no version, and cannot promote.
func TestModelsWithoutARegistry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ModelRegistry = nil })
	status, b, _ := e.call("GET", "/v1/models", auth.Viewer, "")
	var list ModelList
	if status != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Models) != 0 || list.Active != 0 ||
		list.InUse.Name != e.opts.Models.Name || list.InUse.Version != 0 {
		t.Errorf("GET /v1/models without a registry = %d %s; want no version, the models in use by name", status, b)
	}
	status, b, _ = e.call("GET", "/v1/models/1", auth.Viewer, "")
	wantError(t, status, b, http.StatusServiceUnavailable, "")
	status, b, _ = e.call("POST", "/v1/models/1:promote", auth.Admin, `{}`)
	wantError(t, status, b, http.StatusServiceUnavailable, "")
}
