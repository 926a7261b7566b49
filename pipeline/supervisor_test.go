package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autofix/autofix/ledger"
)

// runs is a RunStore in memory.
type runs struct {
	mu sync.Mutex
	m  map[string]ledger.PipelineRun
}

func (r *runs) CreatePipelineRun(_ context.Context, run ledger.PipelineRun) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[run.Pipeline+"/"+run.Run]; ok {
		return ledger.ErrConflict
	}
	r.m[run.Pipeline+"/"+run.Run] = run
	return nil
}

func (r *runs) PipelineRun(_ context.Context, pipeline, run string) (ledger.PipelineRun, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, ok := r.m[pipeline+"/"+run]
	if !ok {
		return got, ledger.ErrNotFound
	}
	return got, nil
}

func (r *runs) PipelineRuns(_ context.Context, running bool, _ int) ([]ledger.PipelineRun, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ledger.PipelineRun
	for _, run := range r.m {
		if !running || run.Phase == string(Running) {
			out = append(out, run)
		}
	}
	return out, nil
}

func (r *runs) FinishPipelineRun(_ context.Context, pipeline, run, phase, message string, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.m[pipeline+"/"+run]
	got.Phase, got.Message, got.UpdatedAt = phase, message, at
	r.m[pipeline+"/"+run] = got
	return nil
}

func (r *runs) phase(key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[key].Phase
}

// The supervisor drives a started run to its end and records the end; a recorded
// definition that does not load fails its run instead of being retried forever.
func TestSupervisorDrivesRunsToTheirEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := fake.NewClientset()
		c.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
			j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job) // completes at once
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			return false, nil, nil
		})
		store := &runs{m: map[string]ledger.PipelineRun{}}
		log := slog.New(slog.DiscardHandler)
		s := &Supervisor{Runs: store, Driver: &Driver{Client: c, Chains: chains{}, Poll: time.Second, Log: log},
			Observer: &Driver{Client: c, Chains: chains{}, Observe: true}, Log: log}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()

		def := trainOnly(t)
		if _, err := s.Start(ctx, def, "run1", "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Start(ctx, def, "run1", "bob"); !errors.Is(err, ledger.ErrConflict) {
			t.Errorf("a second start of run1: %v, want a conflict", err)
		}
		bad := ledger.PipelineRun{Pipeline: "broken", Run: "r", Phase: string(Running), Definition: json.RawMessage(`{"name": 7}`)}
		if err := store.CreatePipelineRun(ctx, bad); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second) // simulated: polls every 2 s, the driver every 1 s
		synctest.Wait()
		if got := store.phase(def.Name + "/run1"); got != string(Succeeded) {
			t.Errorf("run1 is %q, want succeeded", got)
		}
		if got := store.m["broken/r"]; got.Phase != string(Failed) || !strings.Contains(got.Message, "does not load") {
			t.Errorf("the broken run is %q (%q), want failed, saying its definition does not load", got.Phase, got.Message)
		}
		r, stages, err := s.Status(ctx, def.Name, "run1")
		if err != nil || r.CreatedBy != "alice" || len(stages) != 1 || stages[0].Phase != Succeeded {
			t.Errorf("Status = %+v, %+v, %v; want alice's run with its one stage succeeded", r, stages, err)
		}
		cancel()
		<-done
	})
}
