package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/policy"
)

// withPipelines gives the server pipelines whose pods may do what pods allows.
// No driver runs: these tests are about what is accepted.
func withPipelines(pods policy.Pods) func(*Options) {
	return func(o *Options) {
		o.Pipelines = &pipeline.Supervisor{Runs: o.Ledger.(*ledger.Store)}
		o.Pods = pods
	}
}

func TestStartPipelineRefusesUnsafePods(t *testing.T) {
	const hostile = `name: vision
namespace: ml
artifacts: s3://m
stages:
  - name: train
    job: {spec: {containers: [{name: train, image: pytorch}]}}
  - name: deploy
    deploy:
      replicas: 1
      template:
        spec:
          hostNetwork: true
          containers: [{name: server, image: triton, securityContext: {privileged: true}}]
`
	body, err := json.Marshal(StartPipelineRequest{YAML: hostile, Run: "run1"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withPipelines(policy.Pods{}))
	status, b, _ := e.call("POST", "/v1/pipelines", auth.Admin, string(body))
	got := wantError(t, status, b, http.StatusBadRequest, "definition")
	for _, field := range []string{"stages[1].deploy.template.spec.hostNetwork", "stages[1].deploy.template.spec.containers[0].securityContext.privileged"} {
		if !strings.Contains(got.Message, field+": true is refused") {
			t.Errorf("message %q does not name %s", got.Message, field)
		}
	}
	_, b, _ = e.call("GET", "/v1/pipelines", auth.Viewer, "")
	if strings.Contains(string(b), "vision") {
		t.Errorf("the refused run was recorded: %s", b)
	}

	// The policy's switches allow what they name.
	e = newEnv(t, withPipelines(policy.Pods{AllowPrivileged: true, AllowHostNamespaces: true}))
	if status, b, _ := e.call("POST", "/v1/pipelines", auth.Admin, string(body)); status != http.StatusCreated {
		t.Errorf("POST with the classes allowed = %d %s, want 201", status, b)
	}
}
