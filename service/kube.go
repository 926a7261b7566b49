package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

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
	return kubernetes.NewForConfig(cfg)
}

// kubeRemediator submits approved remediations as new Jobs (engine.Remediator),
// each only after the cluster has borne its failure out again: between the
// decision and now, the Job may have gone, or an approver may have approved an
// event that was never verified.
type kubeRemediator struct {
	s *remediate.Submitter
	v *remediate.Verifier
}

func (k kubeRemediator) Submit(ctx context.Context, r *ledger.Remediation) error {
	if r.Event != nil && r.Event.Job.Kind == failure.Deployment {
		return fmt.Errorf("%s is a Deployment: autofix re-submits Jobs; a rollout is rolled back by the pipeline driver or a person: %w",
			r.Event.Job.Name, engine.ErrCannotSubmit)
	}
	sub, err := submission(r)
	if err != nil {
		return fmt.Errorf("%w: %w", err, engine.ErrCannotSubmit)
	}
	// The attempt's own Job first: once it exists (a retry after a crash, or after a
	// create that timed out but went through) the submission is done, whatever the
	// failed Job has become meanwhile.
	if done, err := k.s.Created(ctx, sub); done || err != nil {
		return engineError(err)
	}
	v, err := k.v.Verify(ctx, r.Event)
	if err != nil {
		return engineError(err)
	}
	// Built from the Job just verified, not read again.
	return engineError(k.s.CreateFrom(ctx, sub, v.Base))
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

// kubeVerifier checks failure events against the cluster (engine.Verifier).
type kubeVerifier struct{ v *remediate.Verifier }

func (k kubeVerifier) Verify(ctx context.Context, ev *failure.Event) (engine.Verified, error) {
	v, err := k.v.Verify(ctx, ev)
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

func (l ledgerChains) FailureState(ctx context.Context, job *batchv1.Job) (string, string, error) {
	// The Job's failure, or else its pods' failing to start.
	for _, id := range []string{remediate.JobEventID(job), remediate.StuckEventID(job)} {
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
