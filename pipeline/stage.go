package pipeline

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// workloads is how the driver creates and follows the workloads of one kind of
// stage (Jobs, JobSets, ...): T is the kind's object.
type workloads[T metav1.Object] struct {
	kind   string // as messages name it: "job", "jobset"
	list   func(ctx context.Context, selector string) ([]T, error)
	get    func(ctx context.Context, name string) (T, error)
	create func(ctx context.Context, obj T) error
	// build is the stage's first workload, not yet created.
	build func() (T, error)
	// succeeded and failed read a workload's end from its status.
	succeeded, failed func(T) bool
	// unfixable, if set, says why a failed workload has a failure autofix never
	// reports (so no remediation will come): the stage then fails at once.
	unfixable func(T) string
}

// runStage runs stage s of run with workloads of w's kind: creates its workload
// once, then follows it and the attempts remediation creates for it (new objects
// with the same labels) to the end. A workload labelled as the stage's that autofix
// did not create for the run fails the stage. The stage is done when any of its
// workloads succeeded; it has failed when the latest one failed and the ledger says
// its remediation was rejected or abandoned.
func runStage[T metav1.Object](ctx context.Context, d *Driver, def *Definition, run string, s *Stage, w workloads[T]) (StageStatus, error) {
	ss := StageStatus{Name: s.Name, Phase: Running, Artifact: artifact(def, run, s.Name)}
	objs, err := w.list(ctx, d.selector(def, run, s.Name))
	if err != nil {
		return ss, err
	}
	for _, o := range objs {
		if err := stageOwner(o, w.kind, def, run, s); err != nil {
			ss.Object = o.GetName()
			return d.refuse(ss, err), nil
		}
	}
	switch {
	case len(objs) == 0 && d.Observe:
		ss.Phase, ss.Message = Pending, "not started"
		return ss, nil
	case len(objs) == 0:
		obj, err := w.build()
		if err != nil {
			return ss, err
		}
		ss.Object, ss.Attempts = obj.GetName(), 1
		err = w.create(ctx, obj)
		if apierrors.IsAlreadyExists(err) {
			// Not among the stage's objects listed above: whose is it?
			existing, err := w.get(ctx, obj.GetName())
			if apierrors.IsNotFound(err) {
				return ss, nil // gone again: the next step creates it
			}
			if err != nil {
				return ss, err
			}
			if err := stageOwner(existing, w.kind, def, run, s); err != nil {
				return d.refuse(ss, err), nil
			}
			return ss, nil // this run's, and the list was behind
		}
		if err != nil {
			return ss, err
		}
		d.log().Info("stage started", "pipeline", def.Name, "run", run, "stage", s.Name, w.kind, obj.GetName())
		return ss, nil
	}
	ss.Attempts = len(objs)
	latest := objs[0]
	for _, o := range objs {
		if w.succeeded(o) {
			ss.Phase, ss.Object = Succeeded, o.GetName()
			return ss, nil
		}
		if attemptOf(o) > attemptOf(latest) {
			latest = o
		}
	}
	ss.Object = latest.GetName()
	if w.unfixable != nil && w.failed(latest) {
		if why := w.unfixable(latest); why != "" {
			ss.Phase, ss.Message = Failed, why
			return ss, nil
		}
	}
	// Failed, or stuck (its pods cannot start): either way the ledger says what
	// remediation made of it.
	return d.remediation(ctx, ss, latest, w.failed(latest))
}

// pointers are pointers to the items of a list.
func pointers[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}
