package remediate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/podsafety"
	"github.com/autofix/autofix/policy"
)

// ErrCannotSubmit marks a submission that can never succeed (the failed Job is gone,
// or what failed is not a Job): retrying it is pointless.
var ErrCannotSubmit = errors.New("cannot be re-submitted")

// Submission is one attempt to create: the failed Job it follows and what to change.
type Submission struct {
	Namespace string
	// FailedJob is the Job whose failure this attempt answers; its spec is the base.
	FailedJob string
	// Name is the new Job's name, deterministic per attempt.
	Name string
	// Chain is the chain id, Original its first Job, Attempt the new attempt's number.
	Chain, Original string
	Attempt         int
	// Remediation is the id of the remediation that asked for the attempt.
	Remediation string
	// FailedUID is the failed Job's uid, when known: a Job of the same name with
	// another uid is another Job, not a base for this fix.
	FailedUID string
	// Token is the attempt's token (failure.AnnotationAttemptToken); "" for attempts
	// recorded before tokens, which are recognised by their labels alone.
	Token  string
	Option failure.Option
}

// SubmitterOptions configure a Submitter.
type SubmitterOptions struct {
	// GPUTypeLabel is the node label that names GPU models (default
	// "nvidia.com/gpu.product"); a changed GPU type becomes a node selector on it.
	GPUTypeLabel string
	// Specs, if set, holds the specs of failed Jobs the watcher saw: a fix is still
	// submitted when its failed Job is gone.
	Specs SpecStore
	// Pods are the policy's pod-safety switches: autofix creates Jobs with its own
	// identity, so it re-creates no privileged pod, host path or host namespace the
	// policy does not allow, whoever wrote the failed Job.
	Pods policy.Pods
}

// Submitter re-creates failed Jobs as new attempts.
type Submitter struct {
	client kubernetes.Interface
	o      SubmitterOptions
}

// NewSubmitter returns a Submitter that uses client.
func NewSubmitter(client kubernetes.Interface, o SubmitterOptions) *Submitter {
	if o.GPUTypeLabel == "" {
		o.GPUTypeLabel = "nvidia.com/gpu.product"
	}
	return &Submitter{client: client, o: o}
}

// Submit creates the attempt's Job from the failed Job (or the spec the watcher kept
// of it, when it is gone). A Job of that name that autofix created for this
// remediation is the attempt, created before (a retry after a crash): Submit then
// succeeds. Errors that a retry cannot mend — the failed Job is gone, a Job of that
// name belongs to someone else, the API server forbids or refuses the Job — wrap
// ErrCannotSubmit; others (the API server unreachable, overloaded) may pass.
func (s *Submitter) Submit(ctx context.Context, sub *Submission) error {
	if sub.FailedUID == "" {
		return fmt.Errorf("the failed job %s/%s has no uid: %w", sub.Namespace, sub.FailedJob, ErrCannotSubmit)
	}
	if done, err := s.Created(ctx, sub); done || err != nil {
		return err
	}
	failed, _, err := findJob(ctx, s.client, s.o.Specs, sub.Namespace, sub.FailedJob, sub.FailedUID)
	if errors.Is(err, ErrUnverified) {
		return fmt.Errorf("the failed job %s/%s is gone (deleted, removed by its TTL, or replaced), and its spec with it: %w",
			sub.Namespace, sub.FailedJob, ErrCannotSubmit)
	}
	if err != nil {
		return classify(err)
	}
	return s.CreateFrom(ctx, sub, failed)
}

// CreateFrom creates the attempt's Job from failed, the failed Job (or its kept
// spec) as the caller found and checked it. The errors are Submit's.
func (s *Submitter) CreateFrom(ctx context.Context, sub *Submission, failed *batchv1.Job) error {
	job, err := s.NewAttempt(failed, sub)
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrCannotSubmit)
	}
	_, err = s.client.BatchV1().Jobs(sub.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if done, err := s.Created(ctx, sub); done || err != nil {
			return err
		}
	}
	if err != nil {
		return classify(fmt.Errorf("create job %s/%s: %w", sub.Namespace, sub.Name, err))
	}
	return nil
}

// Created reports whether the attempt's Job exists and is autofix's for this
// remediation (its labels, its remediation annotation and its token); a Job of that
// name that is not is an error that wraps ErrCannotSubmit (autofix never takes
// another's Job for its own).
func (s *Submitter) Created(ctx context.Context, sub *Submission) (bool, error) {
	got, err := s.client.BatchV1().Jobs(sub.Namespace).Get(ctx, sub.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, classify(fmt.Errorf("look for job %s/%s: %w", sub.Namespace, sub.Name, err))
	case isAttempt(got, sub):
		return true, nil
	}
	return false, fmt.Errorf("a Job %s/%s exists that autofix did not create for remediation %s: %w",
		sub.Namespace, sub.Name, sub.Remediation, ErrCannotSubmit)
}

// isAttempt reports whether obj is sub's attempt: autofix's, for its remediation,
// with its token.
func isAttempt(obj metav1.Object, sub *Submission) bool {
	return obj.GetLabels()[failure.LabelManaged] == "true" && obj.GetAnnotations()[failure.AnnotationRemediation] == sub.Remediation &&
		obj.GetAnnotations()[failure.AnnotationAttemptToken] == sub.Token
}

// classify marks the API server's answers that a retry cannot change (403, 401 with
// a revoked token aside: the namespace has no RoleBinding; 422 and 400: the Job is
// invalid; 404: the namespace is gone; 413; 405) as ErrCannotSubmit.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsNotFound(err),
		apierrors.IsRequestEntityTooLargeError(err), apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err),
		apierrors.IsUnsupportedMediaType(err):
		return fmt.Errorf("%w: %w", err, ErrCannotSubmit)
	}
	return err
}

// maxDeadlineSeconds bounds the activeDeadlineSeconds an attempt may get: ten years.
// (1e19 seconds once became math.MinInt64, a Job the API server refuses.)
const maxDeadlineSeconds = 10 * failure.MaxDurationSeconds

// serverLabels are what the Job controller and API server put on a Job and its pod
// template; a new Job must not carry the old one's.
var serverLabels = []string{"controller-uid", "job-name", batchv1.ControllerUidLabel, batchv1.JobNameLabel}

// NewAttempt builds the Job for sub from the failed Job: its spec with the
// server-generated parts stripped (selector, controller labels, status), the chosen
// resources and parameters applied, and the labels and annotations that link the
// chain. Every label of the failed Job is kept (Kueue's queue and priority class
// among them); a Job Kueue admits (LabelQueueName) is created suspended, for Kueue
// to admit.
func (s *Submitter) NewAttempt(failed *batchv1.Job, sub *Submission) (*batchv1.Job, error) {
	spec := failed.Spec.DeepCopy()
	spec.Selector, spec.ManualSelector = nil, nil
	tmpl := &spec.Template
	for _, l := range serverLabels {
		delete(tmpl.Labels, l)
	}
	tmpl.Labels = withChain(tmpl.Labels, sub)
	c, err := mainContainer(&tmpl.Spec, failed.Annotations)
	if err != nil {
		return nil, fmt.Errorf("job %s/%s: %w", failed.Namespace, failed.Name, err)
	}
	if err := podsafety.CheckTemplate(tmpl, "spec.template", s.o.Pods); err != nil {
		return nil, fmt.Errorf("job %s/%s: %w", failed.Namespace, failed.Name, err)
	}
	opt := sub.Option
	b, err := bindings(failed.Annotations)
	if err != nil {
		return nil, err
	}
	if err := s.applyOption(&tmpl.Spec, c, b, opt); err != nil {
		return nil, err
	}
	avoidNodes(&tmpl.Spec, opt.AvoidNodes)
	if spec.ActiveDeadlineSeconds, err = deadline(opt, spec.ActiveDeadlineSeconds); err != nil {
		return nil, err
	}
	labels := maps.Clone(failed.Labels)
	for _, l := range serverLabels {
		delete(labels, l)
	}
	if queued(labels) {
		// Kueue admits it, within the queue's quota, as it admitted the failed one
		// (which it had unsuspended): created running, it would start outside it.
		suspend := true
		spec.Suspend = &suspend
	}
	annotations := attemptAnnotations(failed.Annotations, sub)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: sub.Name, Namespace: sub.Namespace, Labels: withChain(labels, sub), Annotations: annotations},
		Spec:       *spec,
	}, nil
}

// attemptAnnotations are the annotations of sub's attempt from those of the failed
// workload: its own (not autofix's, nor kubectl's last applied configuration), the
// tunables, parameters, container and pipeline run it declared, and the chain's.
func attemptAnnotations(failed map[string]string, sub *Submission) map[string]string {
	annotations := map[string]string{}
	for k, v := range failed {
		if strings.HasPrefix(k, "autofix.io/") || k == "kubectl.kubernetes.io/last-applied-configuration" {
			continue
		}
		annotations[k] = v
	}
	for _, k := range []string{failure.AnnotationTunables, failure.AnnotationParams, failure.AnnotationContainer, failure.AnnotationPipelineRun} {
		if v, ok := failed[k]; ok {
			annotations[k] = v
		}
	}
	annotations[failure.AnnotationChain] = sub.Chain
	annotations[failure.AnnotationRemediation] = sub.Remediation
	if sub.Token != "" {
		annotations[failure.AnnotationAttemptToken] = sub.Token
	}
	if len(sub.Option.Changes) > 0 {
		changes, _ := json.Marshal(sub.Option.Changes)
		annotations[failure.AnnotationChanges] = string(changes)
	}
	return annotations
}

// applyOption sets the chosen resources on container c of the pod spec (a changed
// GPU model as a node selector on the GPU label) and its parameters where the
// bindings b say.
func (s *Submitter) applyOption(spec *corev1.PodSpec, c *corev1.Container, b map[string]Binding, opt failure.Option) error {
	applyResources(c, opt.Resources)
	if opt.Resources.GPUType != "" && opt.Resources.GPUType != spec.NodeSelector[s.o.GPUTypeLabel] {
		if spec.NodeSelector == nil {
			spec.NodeSelector = map[string]string{}
		}
		spec.NodeSelector[s.o.GPUTypeLabel] = opt.Resources.GPUType
	}
	for name, value := range opt.Params {
		bd, ok := b[name]
		switch {
		case !ok:
			if value != paramsOf(c, b)[name] {
				return fmt.Errorf("parameter %s: the job declares no way to pass it (annotation %s)", name, failure.AnnotationParams)
			}
		case bd.Env != "":
			c.Env = setEnv(c.Env, bd.Env, value)
		case bd.Arg != "":
			c.Args = setArg(c.Args, bd.Arg, value)
		}
	}
	return nil
}

// deadline is the activeDeadlineSeconds an attempt gets: the option's (rounded up),
// or else the one it had (cur).
func deadline(opt failure.Option, cur *int64) (*int64, error) {
	if opt.DeadlineSeconds <= 0 {
		return cur, nil
	}
	if opt.DeadlineSeconds > maxDeadlineSeconds || math.IsNaN(opt.DeadlineSeconds) {
		return nil, fmt.Errorf("deadline of %g seconds: over the limit of %d", opt.DeadlineSeconds, maxDeadlineSeconds)
	}
	d := int64(math.Ceil(opt.DeadlineSeconds))
	return &d, nil
}

// withChain adds the chain's labels to l.
func withChain(l map[string]string, sub *Submission) map[string]string {
	if l == nil {
		l = map[string]string{}
	}
	l[failure.LabelManaged] = "true"
	l[failure.LabelOriginal] = sub.Original
	l[failure.LabelAttempt] = strconv.Itoa(sub.Attempt)
	if l[failure.LabelTemplate] == "" {
		l[failure.LabelTemplate] = sub.Original
	}
	return l
}
