package remediate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"

	"github.com/autofix/autofix/failure"
)

// ErrUnverified is wrapped by the error of a failure event the cluster does not bear
// out: autofix must not act on it.
var ErrUnverified = errors.New("not verified on the cluster")

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// Namespaces autofix watches (empty: all) and Selector, a label selector the
	// Jobs must match ("" for all): what autofix may act on.
	Namespaces []string
	Selector   string
	// GPUTypeLabel is the node label naming GPU models (default nvidia.com/gpu.product).
	GPUTypeLabel string
	// Specs holds the specs of failed Jobs the watcher saw: a failure is still
	// verified when its Job is gone.
	Specs SpecStore
	// Kueue, if set, bears out the stuck event of a queued Job Kueue does not
	// admit: its Workload's QuotaReserved condition False for InadmissibleAfter
	// (default 10 minutes), as the watcher reports it. A Job waiting less is
	// waiting, which is what a queue is for.
	Kueue             *Kueue
	InadmissibleAfter time.Duration
}

// Verified is what the cluster says of the workload a failure event names.
type Verified struct {
	// Job is the event's job as the cluster describes it: identity, configuration,
	// declared tunables and labels. Attempt numbers are not the cluster's to say.
	Job failure.Job
	// Remediation is, for a Job autofix created, the id of the remediation it
	// answered (its managed label and remediation annotation), and Token its attempt
	// token (failure.AnnotationAttemptToken); "" otherwise. Both are claims the caller checks
	// against its records: anyone who can create Jobs can copy the first.
	Remediation string
	Token       string
	// Base is the Job as verified — the live one, or the spec the watcher kept of
	// it — from which a fix is built (Submitter.CreateFrom); nil for a Deployment
	// and a JobSet.
	Base *batchv1.Job
	// JobSet is, for a JobSet's failure, the JobSet as verified, and ReplicatedJob
	// the replicated job whose Job failed first: the fix is built from them.
	JobSet        *jobsetapi.JobSet
	ReplicatedJob string
	// RayJob is, for a RayJob's failure, the RayJob as verified, and RayGroup the
	// group whose pod failed first (RayHeadGroup, or a worker group's name).
	RayJob   *unstructured.Unstructured
	RayGroup string
	// Workflow is, for an Argo Workflow's failure, the Workflow as verified, and
	// WorkflowNode the id of its pod step that failed first: the fix is built from
	// them.
	Workflow     *unstructured.Unstructured
	WorkflowNode string
}

// Verifier checks failure events against the cluster: everything on the failures
// topic is untrusted, and autofix acts only for a failure it can see there.
type Verifier struct {
	client kubernetes.Interface
	o      VerifierOptions
	sel    labels.Selector
}

// NewVerifier returns a Verifier that reads the cluster through client.
func NewVerifier(client kubernetes.Interface, o VerifierOptions) (*Verifier, error) {
	if o.GPUTypeLabel == "" {
		o.GPUTypeLabel = "nvidia.com/gpu.product"
	}
	if o.InadmissibleAfter <= 0 {
		o.InadmissibleAfter = 10 * time.Minute
	}
	sel := labels.Everything()
	if o.Selector != "" {
		var err error
		if sel, err = labels.Parse(o.Selector); err != nil {
			return nil, fmt.Errorf("selector %q: %w", o.Selector, err)
		}
	}
	return &Verifier{client: client, o: o, sel: sel}, nil
}

// Verify checks that ev is a failure autofix may act on: its workload exists in the
// event's namespace with the event's uid (or, for a Job that is gone, the watcher kept
// its spec), it lies in a watched namespace and matches the selector, the event's id
// is the one the watcher gives that failure, and a Job really failed (its Failed
// condition) or is stuck as the watcher reports (a pod that cannot start).
//
// An error wrapping ErrUnverified says why the cluster does not bear the event out;
// any other error means the cluster could not be asked (try again later).
func (v *Verifier) Verify(ctx context.Context, ev *failure.Event) (Verified, error) {
	j := &ev.Job
	switch {
	case j.UID == "":
		return Verified{}, unverified("job.uid: required to act on a cluster")
	case j.Namespace == "":
		return Verified{}, unverified("job.namespace: required to act on a cluster")
	case len(validation.IsDNS1123Label(j.Namespace)) > 0:
		return Verified{}, unverified("job.namespace: %q is not a namespace name", j.Namespace)
	case len(validation.IsDNS1123Subdomain(j.Name)) > 0:
		return Verified{}, unverified("job.name: %q is not the name of a Kubernetes object", j.Name)
	case !v.watched(j.Namespace):
		return Verified{}, unverified("namespace %q is not one autofix watches", j.Namespace)
	}
	if j.Kind == failure.Deployment {
		return v.verifyDeployment(ctx, ev)
	}
	stuck := ev.ID == "k8s-job-"+j.UID+"-stuck"
	if ev.ID != "k8s-job-"+j.UID && !stuck {
		return Verified{}, unverified("id %q: the failure of Job %s/%s is reported as %q (or %q when its pods cannot start)",
			ev.ID, j.Namespace, j.Name, "k8s-job-"+j.UID, "k8s-job-"+j.UID+"-stuck")
	}
	job, kept, err := findJob(ctx, v.client, v.o.Specs, j.Namespace, j.Name, j.UID)
	if err != nil {
		return Verified{}, err
	}
	if !v.sel.Matches(labels.Set(job.Labels)) {
		return Verified{}, unverified("Job %s/%s does not match the selector %q", j.Namespace, j.Name, v.o.Selector)
	}
	if jobSetControls(job) {
		// Whether or not its kind is enabled: a copy of one of its Jobs would run
		// alone, outside the JobSet (or RayJob) and whatever queue admitted it.
		owner := metav1.GetControllerOfNoCopy(job)
		return Verified{}, unverified("Job %s/%s is a %s's: autofix fixes the %s (kubernetes.kinds), never one of its Jobs",
			j.Namespace, j.Name, owner.Kind, owner.Kind)
	}
	switch {
	case stuck && !kept:
		ok, err := v.podsStuck(ctx, job)
		if err != nil {
			return Verified{}, err
		}
		if !ok {
			_, cond, err := v.o.Kueue.inadmissible(ctx, job)
			if err != nil {
				return Verified{}, err
			}
			ok = cond != nil && time.Since(cond.LastTransitionTime.Time) >= v.o.InadmissibleAfter
		}
		if !ok {
			return Verified{}, unverified("no pod of Job %s/%s is stuck (pulling its image, or waiting for a node), nor has Kueue kept it out of its queue for %s",
				j.Namespace, j.Name, v.o.InadmissibleAfter)
		}
	case stuck:
		// A Job whose pods could not start and that is gone needs no fix: whoever
		// deleted it did not want it run.
		return Verified{}, unverified("Job %s/%s is gone; a Job that could not start is not re-created once deleted", j.Namespace, j.Name)
	default:
		if _, failed := jobFailed(job); !failed {
			return Verified{}, unverified("Job %s/%s has not failed (no Failed condition)", j.Namespace, j.Name)
		}
	}
	out := Verified{Job: describeJob(job, v.o.GPUTypeLabel), Base: job}
	if job.Labels[failure.LabelManaged] == "true" {
		out.Remediation, out.Token = job.Annotations[failure.AnnotationRemediation], job.Annotations[failure.AnnotationAttemptToken]
	}
	return out, nil
}

// findJob returns the Job namespace/name with uid: the live one, or the spec the
// watcher kept of it in specs (kept is then true); an error wrapping ErrUnverified
// when there is neither.
func findJob(ctx context.Context, client kubernetes.Interface, specs SpecStore, namespace, name, uid string) (job *batchv1.Job, kept bool, err error) {
	live, err := client.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil && string(live.UID) == uid:
		return live, false, nil
	case err != nil && !apierrors.IsNotFound(err):
		return nil, false, fmt.Errorf("read job %s/%s: %w", namespace, name, err)
	}
	if specs != nil && uid != "" {
		k, err := specs.Spec(ctx, uid)
		if err != nil {
			return nil, false, fmt.Errorf("read the kept spec of job %s/%s: %w", namespace, name, err)
		}
		// A kept spec stands for its own Job only: the uid of a Job in another
		// namespace, or of another name, is not this one.
		if k != nil && k.Namespace == namespace && k.Name == name && string(k.UID) == uid {
			return k, true, nil
		}
	}
	return nil, false, unverified("no Job %s/%s with uid %s exists, and the watcher saw none fail", namespace, name, uid)
}

// podsStuck reports whether a pod of job cannot start, as the watcher reports it.
func (v *Verifier) podsStuck(ctx context.Context, job *batchv1.Job) (bool, error) {
	pods, err := v.client.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{batchv1.ControllerUidLabel: string(job.UID)}.String()})
	if err != nil {
		return false, fmt.Errorf("list the pods of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodPending || len(controlledBy([]*corev1.Pod{p}, job)) == 0 {
			continue
		}
		if unschedulable(p) != nil {
			return true, nil
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && stuckReason(w.Reason) {
				return true, nil
			}
		}
	}
	return false, nil
}

// verifyDeployment checks an event about a Deployment: it exists with the event's uid
// and matches the selector, and the id is one the watcher gives its rollouts. autofix
// never re-submits a Deployment from an event (the pipeline driver rolls back its own
// rollouts), so its rollout state is not checked again.
func (v *Verifier) verifyDeployment(ctx context.Context, ev *failure.Event) (Verified, error) {
	j := &ev.Job
	d, err := v.client.AppsV1().Deployments(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && string(d.UID) != j.UID {
		return Verified{}, unverified("no Deployment %s/%s with uid %s exists", j.Namespace, j.Name, j.UID)
	}
	if err != nil {
		return Verified{}, fmt.Errorf("read deployment %s/%s: %w", j.Namespace, j.Name, err)
	}
	// One failure per rollout: the id names the Deployment's current generation.
	if id := DeploymentEventID(d); ev.ID != id && ev.ID != id+"-crashloop" {
		return Verified{}, unverified("id %q: the rollout of Deployment %s/%s now failing is reported as %q (or %q)", ev.ID,
			j.Namespace, j.Name, id, id+"-crashloop")
	}
	if !v.sel.Matches(labels.Set(d.Labels)) {
		return Verified{}, unverified("Deployment %s/%s does not match the selector %q", j.Namespace, j.Name, v.o.Selector)
	}
	return Verified{Job: describeDeployment(d, v.o.GPUTypeLabel)}, nil
}

// watched reports whether autofix watches namespace ns.
func (v *Verifier) watched(ns string) bool {
	return len(v.o.Namespaces) == 0 || slices.Contains(v.o.Namespaces, metav1.NamespaceAll) || slices.Contains(v.o.Namespaces, ns)
}

func unverified(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrUnverified)
}
