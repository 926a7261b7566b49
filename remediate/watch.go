package remediate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/failure"
)

// Publisher sends a FailureEvent on (to Kafka, in serve).
type Publisher interface {
	Publish(ctx context.Context, ev *failure.Event) error
}

// OutcomeSink learns how the attempts autofix created end.
type OutcomeSink interface {
	// Finished reports that a Job that claims to be an attempt autofix created
	// succeeded or failed. The sink must check the claim against its own records:
	// the labels and annotations of a Job are anyone's to set.
	Finished(ctx context.Context, job AttemptJob, succeeded bool, outcome failure.Outcome) error
}

// AttemptJob is a finished Job that claims to be an attempt autofix created.
type AttemptJob struct {
	// Remediation is the remediation it claims to answer (failure.AnnotationRemediation).
	Remediation string
	Namespace   string
	Name        string
	// Token is its failure.AnnotationAttemptToken, "" if it has none.
	Token string
}

// SpecStore keeps the specs of failed Jobs by uid, so that a fix can be submitted
// after the Job is gone (a TTL of 0, a person deleting it).
type SpecStore interface {
	KeepSpec(ctx context.Context, job *batchv1.Job) error
	// Spec returns the kept Job of that uid (nil, nil when there is none).
	Spec(ctx context.Context, uid string) (*batchv1.Job, error)
}

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	// Namespaces to watch; empty watches all. NewWatcherWithInformers takes them
	// from its sources instead, and refuses them here.
	Namespaces []string
	// Selector is a label selector the watched Jobs must match ("" for all).
	Selector string
	// LogLines is how many log lines an event carries (default 60; negative: none).
	LogLines int
	// PendingGrace is how long a pod may fail to start (image pull, scheduling)
	// before that is reported (default 2 minutes).
	PendingGrace time.Duration
	// GPUTypeLabel is the node label naming GPU models (default nvidia.com/gpu.product).
	GPUTypeLabel string
	// MaxAge is how old a failure may be and still be reported (default 24 hours): on
	// a first start, Jobs that failed long ago are history, not work.
	MaxAge time.Duration
	// Specs, if set, keeps the spec of every failed Job it reports.
	Specs SpecStore
	// Catalogue prices every attempt it reports, failed or finished: what the
	// Job's pods requested, for as long as each ran (docs/kubernetes.md, "What a
	// run costs"). Nil: runs go unpriced, and their events and outcomes say so.
	Catalogue *failure.Catalogue
	// Usage, if set, measures the peaks (memory, GPU memory, local storage) of
	// every run the watcher reports, failed or finished (docs/kubernetes.md, "Peak
	// usage"). Nil: the peaks are unknown, and events and outcomes go without.
	Usage UsageSource
	// Kueue, if set, is read for the Workloads of queued Jobs that Kueue keeps
	// suspended: one not admitted for InadmissibleAfter (default 10 minutes) is
	// reported as stuck, with Kueue's reason and message (docs/kubernetes.md,
	// "Kueue").
	Kueue             *Kueue
	InadmissibleAfter time.Duration
	Log               *slog.Logger
}

// Source is a shared informer factory limited to one namespace
// (metav1.NamespaceAll: all of them) that a Watcher reads Jobs, Pods, ReplicaSets
// and Deployments through.
type Source struct {
	Namespace string
	Factory   informers.SharedInformerFactory
}

// Watcher turns failed Jobs (and pods that cannot start) into FailureEvents and
// reports how the Jobs autofix created end. A failure is published once per Job
// (its id comes from the Job's uid); after a restart the informers list what
// failed meanwhile and publish it again under the same id, which the ledger dedupes.
//
// It is a controller in client-go's usual shape: informer event handlers put typed
// keys on a rate-limited work queue, and one worker handles each key from the
// informers' caches. Resyncs (updates that do not change the resource version) are
// dropped: what needs another look later (a pod within its pending grace) is queued
// for that time, and an error is retried with backoff (5 ms doubling up to 1000 s)
// for as long as it lasts, so that a failure seen while Kafka or the ledger is down
// is still reported when they are back.
//
// What it remembers is bounded. The ids of the failures it published and of the
// attempts whose outcome it reported: 200,000 of each at most, each forgotten after
// MaxAge (plus an hour, for failures); past the bound the oldest half goes, and a
// forgotten id costs at most a repeat the ledger dedupes. The last state of deleted
// Jobs not handled yet (a TTL of 0, a person deleting it): 10,000 at most; past that
// a deleted Job's state is not kept (logged), so its failure is reported only if it
// was handled before the deletion. The queue and its retry counts hold one entry per
// object in the informers' caches, or deleted Job kept, and drop it once handled.
type Watcher struct {
	client kubernetes.Interface
	pub    Publisher
	sink   OutcomeSink
	o      WatcherOptions
	// sources are the informers of NewWatcherWithInformers; nil: each Run makes
	// its own, one factory per namespace, and shuts them down at its end.
	sources []Source
	err     error // an option NewWatcher could not use; Run returns it

	running   atomic.Bool
	published *seenSet  // event ids sent by this process
	finished  *seenSet  // uids of attempts whose outcome this process reported
	gone      *goneJobs // deleted Jobs not yet handled
}

// maxSeen bounds the ids the watcher remembers of what it published or reported.
const maxSeen = 200_000

// NewWatcher returns a Watcher that makes its own informers on client, for
// o.Namespaces, each time it runs; Run starts it, and returns at once an option it
// cannot use.
func NewWatcher(client kubernetes.Interface, pub Publisher, sink OutcomeSink, o WatcherOptions) *Watcher {
	w := newWatcher(client, pub, sink, o)
	w.o.Namespaces = watchedNamespaces(o.Namespaces)
	return w
}

// NewWatcherWithInformers returns a Watcher that reads through the informers of
// sources (one per namespace, or one for all namespaces); client serves pod logs.
// It creates the informers it needs in each factory: start the factories after
// this call, and keep them running for as long as the Watcher may run (it may run
// again after a Run ends, when leadership comes back; each Run adds its event
// handlers and removes them at its end).
func NewWatcherWithInformers(client kubernetes.Interface, pub Publisher, sink OutcomeSink, o WatcherOptions, sources ...Source) (*Watcher, error) {
	if len(o.Namespaces) > 0 {
		return nil, errors.New("WatcherOptions.Namespaces: set, but the sources name the namespaces watched; leave it empty")
	}
	if len(sources) == 0 {
		return nil, errors.New("sources: at least one")
	}
	seen := map[string]bool{}
	for i, s := range sources {
		switch {
		case s.Factory == nil:
			return nil, fmt.Errorf("sources[%d].Factory: nil", i)
		case seen[s.Namespace]:
			return nil, fmt.Errorf("sources[%d].Namespace: %q twice", i, s.Namespace)
		case s.Namespace == metav1.NamespaceAll && len(sources) > 1:
			return nil, fmt.Errorf("sources[%d].Namespace: all namespaces beside others", i)
		}
		seen[s.Namespace] = true
		// Made now, so that the caller's Start starts them.
		s.Factory.Batch().V1().Jobs().Informer()
		s.Factory.Core().V1().Pods().Informer()
		s.Factory.Apps().V1().ReplicaSets().Informer()
		s.Factory.Apps().V1().Deployments().Informer()
		o.Namespaces = append(o.Namespaces, s.Namespace)
	}
	w := newWatcher(client, pub, sink, o)
	if w.err != nil {
		return nil, w.err
	}
	w.sources = slices.Clone(sources)
	return w, nil
}

func newWatcher(client kubernetes.Interface, pub Publisher, sink OutcomeSink, o WatcherOptions) *Watcher {
	if o.LogLines == 0 {
		o.LogLines = 60
	}
	if o.PendingGrace <= 0 {
		o.PendingGrace = 2 * time.Minute
	}
	if o.GPUTypeLabel == "" {
		o.GPUTypeLabel = "nvidia.com/gpu.product"
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.InadmissibleAfter <= 0 {
		o.InadmissibleAfter = 10 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{client: client, pub: pub, sink: sink, o: o,
		published: newSeenSet(o.MaxAge+time.Hour, maxSeen), finished: newSeenSet(o.MaxAge, maxSeen),
		gone: newGoneJobs(maxGone)}
	if _, err := labels.Parse(o.Selector); err != nil {
		w.err = fmt.Errorf("WatcherOptions.Selector: %w", err) // else every Job would be passed over, silently
	}
	return w
}

// Run watches until ctx ends, and returns when everything it started has stopped.
// It may be run again afterwards (when leadership comes back), not twice at once.
// A Watcher of NewWatcher starts its informers afresh each time.
func (w *Watcher) Run(ctx context.Context) error {
	if w.err != nil {
		return w.err
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("remediate: the watcher is running already")
	}
	defer w.running.Store(false)
	sources := w.sources
	var own []informers.SharedInformerFactory
	if sources == nil {
		for _, ns := range w.o.Namespaces {
			f := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithNamespace(ns))
			sources = append(sources, Source{Namespace: ns, Factory: f})
			own = append(own, f)
		}
	}
	c, err := newController(w, sources)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		c.close()
		for _, f := range own {
			f.Shutdown() // waits for the informers' goroutines
		}
	}()
	for _, f := range own {
		f.Start(ctx.Done())
	}
	w.o.Log.Info("watching jobs", "namespaces", w.o.Namespaces, "selector", w.o.Selector)
	c.run(ctx)
	return nil
}

// watchedNamespaces are the namespaces to watch, each once; all of them ("") when
// none is named, or when "" is among them.
func watchedNamespaces(named []string) []string {
	var out []string
	for _, ns := range named {
		if ns == metav1.NamespaceAll {
			return []string{metav1.NamespaceAll}
		}
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	if len(out) == 0 {
		return []string{metav1.NamespaceAll}
	}
	return out
}

func (w *Watcher) selected(job *batchv1.Job) bool {
	return w.selectedLabels(job.Labels) && !jobSetControls(job)
}
