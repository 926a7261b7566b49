package remediate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/policy"
)

// Adapter is one kind of workload autofix remediates (a Job, a JobSet). It watches
// the kind, turning its failures into events and reporting how the attempts autofix
// created end; it verifies a failure event against the cluster before anything acts
// on it; and it creates the fix, a new object built from the verified one with the
// chosen option applied. It never updates, patches or deletes an object.
type Adapter interface {
	// Kind names the workload kind as kubernetes.kinds does ("Job", "JobSet").
	Kind() string
	// Watch publishes the kind's failures to pub and reports to sink (nil: not
	// reported) how autofix's attempts end, until ctx ends. It may be called again
	// after it returns (when leadership comes back), not twice at once.
	Watch(ctx context.Context, pub Publisher, sink OutcomeSink) error
	// Verify checks a failure event of this kind against the cluster: an error
	// wrapping ErrUnverified says why the cluster does not bear it out; any other,
	// that the cluster could not be asked.
	Verify(ctx context.Context, ev *failure.Event) (Verified, error)
	// Created reports whether sub's attempt exists and is autofix's for its
	// remediation (labels, remediation annotation, token); an object of that name
	// that is not is an error wrapping ErrCannotSubmit.
	Created(ctx context.Context, sub *Submission) (bool, error)
	// CreateFrom creates sub's attempt from v, what Verify returned for its event.
	// An object of that name that is autofix's for this remediation is the attempt,
	// created before: CreateFrom then succeeds. Errors a retry cannot mend wrap
	// ErrCannotSubmit.
	CreateFrom(ctx context.Context, sub *Submission, v Verified) error
}

// The workload kinds autofix has an adapter for, as kubernetes.kinds names them.
const (
	KindJob      = "Job"
	KindJobSet   = "JobSet"
	KindRayJob   = "RayJob"
	KindWorkflow = "Workflow" // Argo Workflows
)

// Kinds are the workload kinds autofix has an adapter for.
var Kinds = []string{KindJob, KindJobSet, KindRayJob, KindWorkflow}

// EventKind is the workload kind whose watcher gives a failure event the id id:
// JobSet for k8s-jobset-<uid>, RayJob for k8s-rayjob-<uid>, Workflow for
// k8s-workflow-<uid>, Job for anything else (a Job, a stuck Job, a Deployment of a
// deploy stage, or an id no watcher gives, which the Job adapter refuses).
func EventKind(id string) string {
	if strings.HasPrefix(id, jobSetEventPrefix) {
		return KindJobSet
	}
	if strings.HasPrefix(id, rayJobEventPrefix) {
		return KindRayJob
	}
	if strings.HasPrefix(id, workflowEventPrefix) {
		return KindWorkflow
	}
	return KindJob
}

// AdapterOptions configure an adapter.
type AdapterOptions struct {
	// Watch configures its watcher; its namespaces, selector, GPU label and spec
	// store are also what its verifier and submitter go by.
	Watch WatcherOptions
	// Pods are the policy's pod-safety switches its fixes are held to.
	Pods policy.Pods
	// Kueue, if set, reads what Kueue recorded of the workloads it admits: a fix
	// of a queued Job or JobSet goes without what Kueue's admission added to the
	// failed one's pod templates (node selectors, tolerations, its labels and
	// annotations), and a queued Job Kueue does not admit is reported
	// (docs/kubernetes.md, "Kueue"). Nil: Kueue's objects are not read, and a
	// queued workload's templates are kept as they are.
	Kueue *Kueue
}

// Adapters routes failure events to the adapter of their kind.
type Adapters struct {
	byKind map[string]Adapter
	all    []Adapter
}

// NewAdapters returns the router of the enabled adapters, one per kind.
func NewAdapters(adapters ...Adapter) (*Adapters, error) {
	a := &Adapters{byKind: map[string]Adapter{}}
	for i, ad := range adapters {
		if ad == nil {
			return nil, fmt.Errorf("adapters[%d]: nil", i)
		}
		if _, ok := a.byKind[ad.Kind()]; ok {
			return nil, fmt.Errorf("adapters[%d]: kind %s twice", i, ad.Kind())
		}
		a.byKind[ad.Kind()] = ad
		a.all = append(a.all, ad)
	}
	if len(a.all) == 0 {
		return nil, errors.New("adapters: at least one")
	}
	return a, nil
}

// All returns the enabled adapters, in the order given.
func (a *Adapters) All() []Adapter { return append([]Adapter(nil), a.all...) }

// For returns the adapter of the event's kind (EventKind); an error wrapping
// ErrUnverified when that kind is not enabled.
func (a *Adapters) For(ev *failure.Event) (Adapter, error) {
	kind := EventKind(ev.ID)
	if ad, ok := a.byKind[kind]; ok {
		return ad, nil
	}
	return nil, unverified("event %s is a %s's failure, and the kind %s is not enabled (kubernetes.kinds)", ev.ID, kind, kind)
}

// Verify verifies ev with the adapter of its kind.
func (a *Adapters) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
	ad, err := a.For(ev)
	if err != nil {
		return Verified{}, err
	}
	return ad.Verify(ctx, ev)
}

// Jobs is the adapter of batch/v1 Jobs, and of the Deployments of deploy stages
// (their rollouts are watched and verified; autofix never re-creates one). It is
// the Watcher, Verifier and Submitter of this package, unchanged.
type Jobs struct {
	client kubernetes.Interface
	o      WatcherOptions
	v      *Verifier
	s      *Submitter
	kueue  *Kueue
}

// NewJobs returns the Job adapter, which acts through client.
func NewJobs(client kubernetes.Interface, o AdapterOptions) (*Jobs, error) {
	w := o.Watch
	w.Kueue = o.Kueue
	v, err := NewVerifier(client, VerifierOptions{Namespaces: w.Namespaces, Selector: w.Selector, GPUTypeLabel: w.GPUTypeLabel,
		Specs: w.Specs, Kueue: o.Kueue, InadmissibleAfter: w.InadmissibleAfter})
	if err != nil {
		return nil, err
	}
	s := NewSubmitter(client, SubmitterOptions{GPUTypeLabel: w.GPUTypeLabel, Specs: w.Specs, Pods: o.Pods})
	return &Jobs{client: client, o: w, v: v, s: s, kueue: o.Kueue}, nil
}

// Kind is KindJob.
func (j *Jobs) Kind() string { return KindJob }

// Watch runs a Watcher (NewWatcher) until ctx ends.
func (j *Jobs) Watch(ctx context.Context, pub Publisher, sink OutcomeSink) error {
	return NewWatcher(j.client, pub, sink, j.o).Run(ctx)
}

// Verify is Verifier.Verify.
func (j *Jobs) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
	return j.v.Verify(ctx, ev)
}

// Created is Submitter.Created.
func (j *Jobs) Created(ctx context.Context, sub *Submission) (bool, error) {
	return j.s.Created(ctx, sub)
}

// CreateFrom is Submitter.CreateFrom, from the verified Job, less what Kueue
// injected into its pod template when it admitted it (with a Kueue reader).
func (j *Jobs) CreateFrom(ctx context.Context, sub *Submission, v Verified) error {
	if v.Base == nil {
		return fmt.Errorf("%s/%s is not a Job that failed: autofix re-submits Jobs; a rollout is rolled back by the pipeline driver or a person: %w",
			sub.Namespace, sub.FailedJob, ErrCannotSubmit)
	}
	if queued(v.Base.Labels) && v.Base.Spec.Suspend != nil && *v.Base.Spec.Suspend {
		// Kueue has not admitted it (it is waiting, or cannot be admitted): a copy in
		// the same queue would run the same work twice once capacity frees. The event
		// tells people; the queue, the quota or the request is theirs to change.
		return fmt.Errorf("job %s/%s is still waiting in Kueue's queue %s: a copy would run the same work twice: %w",
			sub.Namespace, sub.FailedJob, v.Base.Labels[LabelQueueName], ErrCannotSubmit)
	}
	base, err := j.kueue.withoutInjected(ctx, v.Base)
	if err != nil {
		return classify(err)
	}
	return j.s.CreateFrom(ctx, sub, base)
}

// jobSetControls reports whether a JobSet is job's controller, a RayJob (the Job
// that submits its entrypoint) or an Argo Workflow (a resource step's Job): the
// workload is fixed whole, never one Job of it.
func jobSetControls(job *batchv1.Job) bool {
	owner := metav1.GetControllerOfNoCopy(job)
	return owner != nil && (owner.Kind == "JobSet" && strings.HasPrefix(owner.APIVersion, jobsetapi.GroupVersion.Group+"/") ||
		owner.Kind == KindRayJob && strings.HasPrefix(owner.APIVersion, rayJobGVR.Group+"/") ||
		owner.Kind == KindWorkflow && strings.HasPrefix(owner.APIVersion, WorkflowGVR.Group+"/"))
}
