package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	jobsetapi "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	jobsetclient "sigs.k8s.io/jobset/client-go/clientset/versioned"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/pipeline"
	"github.com/autofix/autofix/remediate"
)

// KubeClient connects to the configured cluster.
func KubeClient(c *config.Kubernetes) (kubernetes.Interface, error) {
	cfg, err := restConfig(c)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// JobSetClient connects to the configured cluster's JobSet API (jobset.x-k8s.io).
func JobSetClient(c *config.Kubernetes) (jobsetclient.Interface, error) {
	cfg, err := restConfig(c)
	if err != nil {
		return nil, err
	}
	return jobsetclient.NewForConfig(cfg)
}

// DynamicClient connects to the configured cluster's API for objects autofix
// reads unstructured (KubeRay's RayJobs).
func DynamicClient(c *config.Kubernetes) (dynamic.Interface, error) {
	cfg, err := restConfig(c)
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(cfg)
}

// KueueReader reads the configured cluster's Kueue objects (kueue.x-k8s.io).
func KueueReader(c *config.Kubernetes) (*remediate.Kueue, error) {
	cfg, err := restConfig(c)
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return remediate.NewKueue(client), nil
}

func restConfig(c *config.Kubernetes) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if c.Kubeconfig == "in-cluster" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes.kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "autofix"
	return cfg, nil
}

// adapters are the workload adapters kubernetes.kinds enables, on client (and js
// for JobSets; nil when JobSet is not enabled), reading Kueue's objects through kq
// (nil when kubernetes.kueue is not enabled); their watchers read peaks from usage
// (nil: none) and log to log.
func adapters(c *config.Config, client kubernetes.Interface, js jobsetclient.Interface, kq *remediate.Kueue, specs remediate.SpecStore,
	usage remediate.UsageSource, log *slog.Logger) (*remediate.Adapters, error) {
	k := &c.Kubernetes
	o := remediate.AdapterOptions{Pods: c.Policy.Pods, Kueue: kq, Watch: remediate.WatcherOptions{Namespaces: k.Namespaces, Selector: k.Selector,
		GPUTypeLabel: k.GPUTypeLabel, PendingGrace: k.PendingGrace, Specs: specs, Catalogue: &c.Catalogue, Usage: usage, Log: log,
		InadmissibleAfter: k.Kueue.InadmissibleAfter}}
	jobs, err := remediate.NewJobs(client, o)
	if err != nil {
		return nil, fmt.Errorf("kubernetes.selector: %w", err)
	}
	all := []remediate.Adapter{jobs}
	if k.Enabled(config.KindJobSet) {
		o.Watch.Specs = nil // the ledger keeps Jobs' specs; a JobSet that is gone is not re-created
		sets, err := remediate.NewJobSets(client, js, o)
		if err != nil {
			return nil, fmt.Errorf("kubernetes.selector: %w", err)
		}
		all = append(all, sets)
	}
	if k.Enabled(config.KindRayJob) {
		o.Watch.Specs = nil // a RayJob that is gone is not re-created
		dyn, err := DynamicClient(k)
		if err != nil {
			return nil, err
		}
		rays, err := remediate.NewRayJobs(client, dyn, o)
		if err != nil {
			return nil, fmt.Errorf("kubernetes.selector: %w", err)
		}
		all = append(all, rays)
	}
	if k.Enabled(config.KindWorkflow) {
		// Argo's Workflows are read and created as unstructured objects (no Argo
		// types in the build: docs/decisions.md), through a dynamic client of their own.
		o.Watch.Specs = nil // a Workflow that is gone is not re-created
		dyn, err := DynamicClient(k)
		if err != nil {
			return nil, err
		}
		wfs, err := remediate.NewWorkflows(client, dyn, o)
		if err != nil {
			return nil, fmt.Errorf("kubernetes.selector: %w", err)
		}
		all = append(all, wfs)
	}
	return remediate.NewAdapters(all...)
}

// kubeRemediator submits approved remediations as new workloads (engine.Remediator)
// through the adapter of the failure's kind, each only after the cluster has borne
// its failure out again: between the decision and now, the workload may have gone,
// or an approver may have approved an event that was never verified.
type kubeRemediator struct{ kinds *remediate.Adapters }

func (k kubeRemediator) Submit(ctx context.Context, r *ledger.Remediation) error {
	if r.Event != nil && r.Event.Job.Kind == failure.Deployment {
		return fmt.Errorf("%s is a Deployment: autofix re-submits Jobs; a rollout is rolled back by the pipeline driver or a person: %w",
			r.Event.Job.Name, engine.ErrCannotSubmit)
	}
	sub, err := submission(r)
	if err != nil {
		return fmt.Errorf("%w: %w", err, engine.ErrCannotSubmit)
	}
	ad, err := k.kinds.For(r.Event)
	if err != nil {
		return engineError(err)
	}
	// The attempt's own object first: once it exists (a retry after a crash, or
	// after a create that timed out but went through) the submission is done,
	// whatever the failed one has become meanwhile.
	if done, err := ad.Created(ctx, sub); done || err != nil {
		return engineError(err)
	}
	v, err := ad.Verify(ctx, r.Event)
	if err != nil {
		return engineError(err)
	}
	// Built from what was just verified, not read again.
	return engineError(ad.CreateFrom(ctx, sub, v))
}

// engineError maps remediate's sentinel errors to the engine's.
func engineError(err error) error {
	switch {
	case errors.Is(err, remediate.ErrUnverified):
		return fmt.Errorf("%w: %w", err, engine.ErrUnverified)
	case errors.Is(err, remediate.ErrCannotSubmit):
		return fmt.Errorf("%w: %w", err, engine.ErrCannotSubmit)
	}
	return err
}

// kubeVerifier checks failure events against the cluster through the adapter of
// their kind (engine.Verifier).
type kubeVerifier struct{ kinds *remediate.Adapters }

func (k kubeVerifier) Verify(ctx context.Context, ev *failure.Event) (engine.Verified, error) {
	v, err := k.kinds.Verify(ctx, ev)
	return engine.Verified{Job: v.Job, Remediation: v.Remediation, Token: v.Token}, engineError(err)
}

// submission is what the Submitter needs of a remediation: the failed Job, the
// attempt (whose resources and params an approver may have changed) and the rest of
// the chosen option (nodes to avoid, a longer deadline).
func submission(r *ledger.Remediation) (*remediate.Submission, error) {
	if r.Event == nil {
		return nil, fmt.Errorf("remediation %s has no event", r.EventID)
	}
	a, ok := engine.OwnAttempt(r)
	if !ok {
		return nil, fmt.Errorf("remediation %s has no attempt to submit", r.EventID)
	}
	opt, _ := engine.AttemptOption(r)
	ev := r.Event
	return &remediate.Submission{
		Namespace: ev.Job.Namespace, FailedJob: ev.Job.Name, Name: a.JobName,
		Chain: a.ChainID, Original: failure.ChainOriginal(a.ChainID, ev.Job.Namespace, ev.Job.Name), Attempt: a.Number,
		Remediation: r.EventID, FailedUID: ev.Job.UID, Token: a.Token, Option: opt,
	}, nil
}

// KafkaPublisher sends the watcher's events to p's topic (remediate.Publisher), keyed
// so that the events of one chain stay in order.
func KafkaPublisher(p *ingest.Producer) remediate.Publisher { return kafkaPublisher{p} }

type kafkaPublisher struct{ p *ingest.Producer }

func (k kafkaPublisher) Publish(ctx context.Context, ev *failure.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return k.p.Publish(ctx, ingest.Message{Key: []byte(failure.PartitionKey(ev)), Value: b})
}

// ledgerSink records how attempts end (remediate.OutcomeSink), and counts them.
type ledgerSink struct {
	store   *ledger.Store
	metrics *api.Metrics
	// failed, if set, is called after an attempt's failure is recorded: the
	// autonomy check looks at the granted kinds' outcomes then.
	failed func()
}

func (l ledgerSink) Finished(ctx context.Context, job remediate.AttemptJob, succeeded bool, o failure.Outcome) error {
	// Only the Job autofix created for the remediation speaks for it: its labels and
	// annotations are anyone's to copy; its namespace, its name and the attempt's
	// token are not.
	id := job.Remediation
	r, err := l.store.Get(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	a, ok := engine.OwnAttempt(&r)
	if !ok || a.JobName != job.Name || r.Namespace != job.Namespace || a.Namespace != "" && a.Namespace != job.Namespace ||
		a.Token != job.Token {
		return nil // not the attempt: a Job claiming another's remediation
	}
	if r.State == ledger.Approved {
		// The job ran before its submission was recorded (a timeout on a create
		// that went through): wait for the dispatcher to record it.
		return fmt.Errorf("remediation %s finished while still approved", id)
	}
	o.Attempt = a.Number // the ledger's, not the Job's label
	if o.Check() != nil {
		o.DurationSeconds = 0 // a clock gone wrong; the outcome itself stands
	}
	to, detail := ledger.Failed, "the job failed"
	if succeeded {
		to, detail = ledger.Succeeded, "the job succeeded"
	}
	err = l.store.Finish(ctx, id, to, o, "watcher", detail, time.Now())
	var te *ledger.TransitionError
	switch {
	case err == nil:
		if l.metrics != nil {
			var chosen *failure.Option
			if opt, ok := engine.AttemptOption(&r); ok {
				chosen = &opt
			}
			l.metrics.Finished(r.Category, succeeded, chosen)
		}
		if !succeeded && l.failed != nil {
			l.failed()
		}
		return nil
	case errors.Is(err, ledger.ErrConflict) || errors.Is(err, ledger.ErrNotFound) || errors.As(err, &te):
		return nil // finished before (a resync, another replica)
	}
	return err
}

// ledgerSpecs keeps failed Jobs' specs in the ledger (remediate.SpecStore).
type ledgerSpecs struct{ store *ledger.Store }

func (l ledgerSpecs) KeepSpec(ctx context.Context, job *batchv1.Job) error {
	b, err := json.Marshal(job)
	if err != nil {
		return err
	}
	return l.store.KeepJobSpec(ctx, string(job.UID), job.Namespace, job.Name, b, time.Now())
}

func (l ledgerSpecs) Spec(ctx context.Context, uid string) (*batchv1.Job, error) {
	b, err := l.store.JobSpec(ctx, uid, time.Now())
	if err != nil || b == nil {
		return nil, err
	}
	var job batchv1.Job
	if err := json.Unmarshal(b, &job); err != nil {
		return nil, fmt.Errorf("the kept spec of job %s: %w", uid, err)
	}
	return &job, nil
}

// LedgerChains answers the pipeline driver from the ledger (pipeline.Chains).
func LedgerChains(store *ledger.Store) pipeline.Chains { return ledgerChains{store} }

type ledgerChains struct{ store *ledger.Store }

func (l ledgerChains) FailureState(ctx context.Context, workload metav1.Object) (string, string, error) {
	var ids []string
	switch w := workload.(type) {
	case *batchv1.Job: // the Job's failure, or else its pods' failing to start
		ids = []string{remediate.JobEventID(w), remediate.StuckEventID(w)}
	case *jobsetapi.JobSet:
		ids = []string{remediate.JobSetEventID(w)}
	case *unstructured.Unstructured:
		switch w.GetKind() {
		case "RayJob":
			ids = []string{remediate.RayJobEventID(string(w.GetUID()))}
		case "Workflow":
			ids = []string{remediate.WorkflowEventID(string(w.GetUID()))}
		default:
			return "", "", fmt.Errorf("the failure of a %s is not recorded", w.GetKind())
		}
	default:
		return "", "", fmt.Errorf("the failure of a %T is not recorded", workload)
	}
	for _, id := range ids {
		r, err := l.store.Get(ctx, id)
		if errors.Is(err, ledger.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		return string(r.State), r.Reason, nil
	}
	return "", "", nil
}

// identity names this replica for leader election.
func identity(c *config.Kubernetes) string {
	if c.Identity != "" {
		return c.Identity
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// Watch publishes the failures of every workload kind kubernetes.kinds enables to
// pub, as serve's leader does, without recording outcomes or acting, until ctx
// ends (autofix watch). With kubernetes.kueue enabled it reads Kueue's Workloads as
// serve does (a queued Job Kueue will not admit is reported).
func Watch(ctx context.Context, cfg *config.Config, kube kubernetes.Interface, pub remediate.Publisher, usage remediate.UsageSource,
	log *slog.Logger) error {
	var (
		js  jobsetclient.Interface
		kq  *remediate.Kueue
		err error
	)
	if cfg.Kubernetes.Enabled(config.KindJobSet) {
		if js, err = JobSetClient(&cfg.Kubernetes); err != nil {
			return err
		}
	}
	if cfg.Kubernetes.Kueue.Enabled {
		if kq, err = KueueReader(&cfg.Kubernetes); err != nil {
			return err
		}
	}
	kinds, err := adapters(cfg, kube, js, kq, nil, usage, log)
	if err != nil {
		return err
	}
	errs := make(chan error, len(kinds.All()))
	for _, ad := range kinds.All() {
		go func() {
			err := ad.Watch(ctx, pub, nil)
			if err != nil {
				err = fmt.Errorf("%s watcher: %w", ad.Kind(), err)
			}
			errs <- err
		}()
	}
	var first error
	for range kinds.All() {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// PipelineDriver is the pipeline driver of the configured cluster, holding stages
// to the policy's pod switches: Job and deploy stages through kube, and stages of
// every other kind kubernetes.kinds enables (JobSet, RayJob, Workflow) through clients of
// their own; a stage of a kind not enabled fails its run before anything is
// created.
func PipelineDriver(cfg *config.Config, kube kubernetes.Interface, chains pipeline.Chains, log *slog.Logger) (*pipeline.Driver, error) {
	d := &pipeline.Driver{Client: kube, Chains: chains, Pods: cfg.Policy.Pods, Log: log}
	k := &cfg.Kubernetes
	var err error
	if k.Enabled(config.KindJobSet) {
		if d.JobSets, err = JobSetClient(k); err != nil {
			return nil, err
		}
	}
	if k.Enabled(config.KindRayJob) {
		dyn, err := DynamicClient(k)
		if err != nil {
			return nil, err
		}
		d.RayJobs = dyn.Resource(pipeline.RayJobGVR)
	}
	if k.Enabled(config.KindWorkflow) {
		dyn, err := DynamicClient(k)
		if err != nil {
			return nil, err
		}
		d.Workflows = dyn.Resource(pipeline.WorkflowGVR)
	}
	return d, nil
}
