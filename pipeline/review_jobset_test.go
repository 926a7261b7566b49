package pipeline

import (
	"context"
	"fmt"
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
