package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

// Review (issue 15): the service's observer (Supervisor.Status, GET of a run) is a
// Driver with Observe set and JobSets nil when kubernetes.kinds does not name
// JobSet; a run of a definition with a JobSet stage (started while it did, or by
// autofix pipeline run) must be reported, not crash the process.
func TestReviewObservingAJobSetStageWithoutAJobSetClient(t *testing.T) {
	def, err := Parse([]byte(trainAsJobSet))
	if err != nil {
		t.Fatal(err)
	}
	d := &Driver{Client: fake.NewClientset(), Chains: chains{}, Observe: true}
	var st Status
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		st, err = d.Step(context.Background(), def, "r1")
	}()
	if err != nil {
		t.Fatalf("observing Step = %v; want a status", err)
	}
	if len(st.Stages) == 0 || st.Stages[0].Phase == Succeeded {
		t.Errorf("Step = %+v, want the JobSet stage reported as not run", st)
	}
}

// Review (issue 15): the JobSet webhook refuses a JobSet whose Jobs'
// names (<jobset>-<replicated job>-<index>) are not DNS-1035 labels of at most 63
// characters. A definition whose JobSet stage can never be created must be refused
// when it is written, not fail every run at its first step.
func TestReviewJobSetStageNamesTheWebhookRefuses(t *testing.T) {
	const rj = `jobset: {replicatedJobs: [{name: workers, replicas: 4, template: {spec: {template: {spec: {containers: [{name: c}]}}}}}]}`
	long := strings.Repeat("p", 30) // a pipeline name Validate allows; its JobSet (with a 20-character run) has 57
	for _, tt := range []struct{ name, yaml string }{
		{"child Job names over 63 characters", `{name: ` + long + `, namespace: ml, artifacts: s3://m, stages: [{name: train, ` + rj + `}]}`},
		{"a pipeline name starting with a digit", `{name: 3d-seg, namespace: ml, artifacts: s3://m, stages: [{name: train, ` + rj + `}]}`},
	} {
		if _, err := Parse([]byte(tt.yaml)); err == nil {
			t.Errorf("%s: Parse accepted it; want the JobSet stage's names refused", tt.name)
		}
	}
}
