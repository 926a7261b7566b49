package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/remediate"
)

// kubeClient connects to the configured cluster.
func kubeClient(c *config.Kubernetes) (kubernetes.Interface, error) {
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

// kubeRemediator submits approved remediations as new Jobs (engine.Remediator).
type kubeRemediator struct{ s *remediate.Submitter }

func (k kubeRemediator) Submit(ctx context.Context, r *ledger.Remediation) error {
	if r.Event != nil && r.Event.Job.Kind == failure.Deployment {
		return fmt.Errorf("%s is a Deployment: autofix re-submits Jobs; a rollout is rolled back by the pipeline driver or a person: %w",
			r.Event.Job.Name, engine.ErrCannotSubmit)
	}
	sub, err := submission(r)
	if err != nil {
		return fmt.Errorf("%w: %w", err, engine.ErrCannotSubmit)
	}
	err = k.s.Submit(ctx, sub)
	if errors.Is(err, remediate.ErrCannotSubmit) {
		return fmt.Errorf("%w: %w", err, engine.ErrCannotSubmit)
	}
	return err
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
	var opt failure.Option
	if r.Recommendation != nil {
		opt, _ = r.Recommendation.ChosenOption()
	}
	opt.Resources, opt.Params = a.Resources, a.Params
	return &remediate.Submission{
		Namespace: r.Event.Job.Namespace, FailedJob: r.Event.Job.Name, Name: a.JobName,
		Chain: a.ChainID, Original: engine.OriginalName(r.Event), Attempt: a.Number,
		Remediation: r.EventID, FailedUID: r.Event.Job.UID, Option: opt,
	}, nil
}

// kafkaPublisher sends the watcher's events to the failures topic (remediate.Publisher).
type kafkaPublisher struct{ p *ingest.Producer }

func (k kafkaPublisher) Publish(ctx context.Context, ev *failure.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return k.p.Publish(ctx, ingest.Message{Key: []byte(engine.ChainID(ev)), Value: b})
}

// ledgerSink records how attempts end (remediate.OutcomeSink), and counts them.
type ledgerSink struct {
	store   *ledger.Store
	metrics *api.Metrics
}

func (l ledgerSink) Finished(ctx context.Context, id string, succeeded bool, o failure.Outcome) error {
	to, detail := ledger.Failed, "the job failed"
	if succeeded {
		to, detail = ledger.Succeeded, "the job succeeded"
	}
	err := l.store.Finish(ctx, id, to, o, "watcher", detail, time.Now())
	if err == nil && l.metrics != nil {
		if r, gerr := l.store.Get(ctx, id); gerr == nil {
			var chosen *failure.Option
			if r.Recommendation != nil {
				if opt, ok := r.Recommendation.ChosenOption(); ok {
					chosen = &opt
				}
			}
			l.metrics.Finished(r.Category, succeeded, chosen)
		}
	}
	if errors.Is(err, ledger.ErrConflict) {
		if r, gerr := l.store.Get(ctx, id); gerr == nil && r.State == ledger.Approved {
			// The job ran before its submission was recorded (a timeout on a create
			// that went through): wait for the dispatcher to record it.
			return fmt.Errorf("remediation %s finished while still approved: %w", id, err)
		}
	}
	var te *ledger.TransitionError
	if errors.Is(err, ledger.ErrConflict) || errors.Is(err, ledger.ErrNotFound) || errors.As(err, &te) {
		return nil // finished before (a resync, another replica), or not ours
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

// identity names this replica for leader election.
func identity(c *config.Kubernetes) string {
	if c.Identity != "" {
		return c.Identity
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// clusterGPUTypes lists the values of the GPU-model node label on the cluster's nodes
// (nil if it cannot tell: then every model of the catalogue may be proposed).
func clusterGPUTypes(ctx context.Context, kube kubernetes.Interface, label string) []string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: label})
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range nodes.Items {
		if v := n.Labels[label]; v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}
