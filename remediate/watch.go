package remediate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

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
	// Namespaces to watch; empty watches all.
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
	// Resync is the informers' resync period (default 10 minutes).
	Resync time.Duration
	// MaxAge is how old a failure may be and still be reported (default 24 hours): on
	// a first start, Jobs that failed long ago are history, not work.
	MaxAge time.Duration
	// Specs, if set, keeps the spec of every failed Job it reports.
	Specs SpecStore
	Log   *slog.Logger
}

// Watcher turns failed Jobs (and pods that cannot start) into FailureEvents and
// reports how the Jobs autofix created end. A failure is published once per Job
// (its id comes from the Job's uid); after a restart the informers list what
// failed meanwhile and publish it again under the same id, which the ledger dedupes.
type Watcher struct {
	client kubernetes.Interface
	pub    Publisher
	sink   OutcomeSink
	o      WatcherOptions
	queue  workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	jobs      map[string]batchlisters.JobLister
	pods      map[string]corelisters.PodLister
	sets      map[string]appslisters.ReplicaSetLister
	deploys   map[string]appslisters.DeploymentLister
	gone      map[string]*batchv1.Job // deleted Jobs not yet handled, by queue key
	ready     map[string]bool         // namespaces whose caches have synced
	published *seenSet                // event ids sent by this process
	finished  *seenSet                // uids of attempts whose outcome this process reported
}

// maxSeen bounds the ids the watcher remembers of what it published or reported.
const maxSeen = 200_000

// NewWatcher returns a Watcher; Run starts it.
func NewWatcher(client kubernetes.Interface, pub Publisher, sink OutcomeSink, o WatcherOptions) *Watcher {
	if o.LogLines == 0 {
		o.LogLines = 60
	}
	if o.PendingGrace <= 0 {
		o.PendingGrace = 2 * time.Minute
	}
	if o.GPUTypeLabel == "" {
		o.GPUTypeLabel = "nvidia.com/gpu.product"
	}
	if o.Resync <= 0 {
		o.Resync = 10 * time.Minute
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{client: client, pub: pub, sink: sink, o: o,
		jobs: map[string]batchlisters.JobLister{}, pods: map[string]corelisters.PodLister{},
		sets: map[string]appslisters.ReplicaSetLister{}, deploys: map[string]appslisters.DeploymentLister{},
		gone: map[string]*batchv1.Job{}, published: newSeenSet(o.MaxAge+time.Hour, maxSeen), finished: newSeenSet(o.MaxAge, maxSeen)}
}

// Run watches until ctx ends. It may be run again afterwards (when leadership comes
// back): it starts its informers afresh.
func (w *Watcher) Run(ctx context.Context) error {
	w.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer w.queue.ShutDown()
	namespaces := w.namespaces()
	ready := map[string]bool{} // this Run's: an await of an earlier Run writes to its own
	w.mu.Lock()
	w.ready = ready
	w.mu.Unlock()
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(w.client, w.o.Resync, informers.WithNamespace(ns))
		jobs := f.Batch().V1().Jobs()
		pods := f.Core().V1().Pods()
		deploys := f.Apps().V1().Deployments()
		sets := f.Apps().V1().ReplicaSets()
		if _, err := deploys.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.enqueue("deployment", obj) },
			UpdateFunc: func(_, obj any) { w.enqueue("deployment", obj) },
		}); err != nil {
			return err
		}
		if _, err := jobs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.enqueue("job", obj) },
			UpdateFunc: func(_, obj any) { w.enqueue("job", obj) },
			DeleteFunc: w.jobDeleted,
		}); err != nil {
			return err
		}
		if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.enqueue("pod", obj) },
			UpdateFunc: func(_, obj any) { w.enqueue("pod", obj) },
		}); err != nil {
			return err
		}
		w.mu.Lock()
		w.jobs[ns], w.pods[ns] = jobs.Lister(), pods.Lister()
		w.sets[ns], w.deploys[ns] = sets.Lister(), deploys.Lister()
		w.mu.Unlock()
		synced := []cache.InformerSynced{jobs.Informer().HasSynced, pods.Informer().HasSynced,
			deploys.Informer().HasSynced, sets.Informer().HasSynced}
		f.Start(ctx.Done())
		go w.await(ctx, ns, synced, ready)
	}
	w.o.Log.Info("watching jobs", "namespaces", namespaces, "selector", w.o.Selector)
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for w.next(ctx) {
	}
	return nil
}

// await marks namespace ns ready once its caches have synced; until then its keys
// wait. A namespace autofix may not list (a missing RoleBinding) never syncs: the
// others go on, and the log says which one is stuck.
func (w *Watcher) await(ctx context.Context, ns string, synced []cache.InformerSynced, ready map[string]bool) {
	warn := time.AfterFunc(time.Minute, func() {
		w.o.Log.Error("watcher: namespace not synced after a minute; can autofix list jobs, pods, deployments and replicasets there?",
			"namespace", cmp.Or(ns, "(all)"))
	})
	defer warn.Stop()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	w.mu.Lock()
	ready[ns] = true
	w.mu.Unlock()
	w.o.Log.Debug("watcher: namespace synced", "namespace", cmp.Or(ns, "(all)"))
}

// namespaces are the namespaces to watch, each once; all of them ("") when none is
// named, or when "" is among them.
func (w *Watcher) namespaces() []string {
	var out []string
	for _, ns := range w.o.Namespaces {
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

// isReady reports whether the caches of the namespace a key belongs to have synced.
func (w *Watcher) isReady(ns string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ready[metav1.NamespaceAll] {
		return true
	}
	return w.ready[ns]
}

// jobDeleted keeps a deleted Job's last state until its key is handled.
func (w *Watcher) jobDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	key := "job/" + job.Namespace + "/" + job.Name
	w.mu.Lock()
	w.gone[key] = job
	w.mu.Unlock()
	w.queue.Add(key)
}

func (w *Watcher) deleted(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.gone[key]
	return ok
}

// enqueue queues "kind/namespace/name".
func (w *Watcher) enqueue(kind string, obj any) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	w.queue.Add(kind + "/" + key)
}

// next handles one key: success forgets it, a transient error requeues it with
// backoff, and nothing is retried forever (a permanent problem is logged).
func (w *Watcher) next(ctx context.Context) bool {
	key, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(key)
	if _, rest, _ := strings.Cut(key, "/"); !w.isReady(strings.Split(rest, "/")[0]) {
		w.queue.AddAfter(key, time.Second) // its namespace's caches are still filling
		return true
	}
	retry, after, err := w.handle(ctx, key)
	switch {
	case err != nil && w.queue.NumRequeues(key) < 18: // the rate limiter doubles from 5 ms: ~20 minutes in all
		w.o.Log.Warn("watch: will retry", "key", key, "err", err)
		w.queue.AddRateLimited(key)
	case err != nil:
		w.o.Log.Error("watch: giving up", "key", key, "err", err)
		w.queue.Forget(key)
		w.mu.Lock()
		delete(w.gone, key) // the last state of a deleted Job is no longer wanted
		w.mu.Unlock()
	case retry:
		w.queue.Forget(key)
		w.queue.AddAfter(key, after)
	default:
		w.queue.Forget(key)
	}
	return true
}

func (w *Watcher) handle(ctx context.Context, key string) (retry bool, after time.Duration, err error) {
	kind, rest, _ := strings.Cut(key, "/")
	ns, name, err := cache.SplitMetaNamespaceKey(rest)
	if err != nil {
		return false, 0, fmt.Errorf("bad key %q: %w", key, err)
	}
	w.mu.Lock()
	jl, pl := w.lister(ns)
	rs, ds := w.appsListers(ns)
	w.mu.Unlock()
	switch kind {
	case "pod":
		pod, err := pl.Pods(ns).Get(name)
		if apierrors.IsNotFound(err) {
			return false, 0, nil // gone
		}
		if err != nil {
			return false, 0, err
		}
		if retry, after, err := w.crashLooping(ctx, pod, rs, ds); retry || err != nil {
			return retry, after, err
		}
		return w.handlePod(ctx, pod, jl)
	case "deployment":
		d, err := ds.Deployments(ns).Get(name)
		if apierrors.IsNotFound(err) {
			return false, 0, nil
		}
		if err != nil {
			return false, 0, err
		}
		return false, 0, w.handleDeployment(ctx, d)
	}
	job, err := jl.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// Deleted (a TTL of 0, a person): a failure it had is still reported, from
		// the last state seen.
		w.mu.Lock()
		job = w.gone[key]
		delete(w.gone, key)
		w.mu.Unlock()
		if job == nil {
			return false, 0, nil
		}
		defer func() {
			if err != nil { // keep it for the retry
				w.mu.Lock()
				w.gone[key] = job
				w.mu.Unlock()
			}
		}()
	} else if err != nil {
		return false, 0, err
	}
	if !w.selected(job) {
		return false, 0, nil
	}
	if err := w.trackOutcome(ctx, job); err != nil {
		return false, 0, err
	}
	cond, failed := jobFailed(job)
	if !failed || w.sent(JobEventID(job)) || time.Since(cond.LastTransitionTime.Time) > w.o.MaxAge {
		return false, 0, nil
	}
	pods, err := pl.Pods(ns).List(labels.SelectorFromSet(labels.Set{batchv1.ControllerUidLabel: string(job.UID)}))
	if err != nil {
		return false, 0, err
	}
	if lastFailed(pods) == nil && job.Status.Failed > 0 && cond.Reason != batchv1.JobReasonDeadlineExceeded &&
		w.queue.NumRequeues(key) < 3 && !w.deleted(key) {
		// The pod informer may lag the Job's: wait a little for the failed pod, which
		// says why (OOMKilled, exit code, log), before publishing without it.
		return false, 0, fmt.Errorf("job %s failed, its failed pod is not in the cache yet", job.Name)
	}
	w.keepSpec(ctx, job)
	ev := w.jobEvent(ctx, job, cond, pods)
	return false, 0, w.publish(ctx, ev)
}

// handlePod reports a pod of a watched Job that cannot start: an image that cannot
// be pulled, or no node it fits on, for longer than PendingGrace.
func (w *Watcher) handlePod(ctx context.Context, pod *corev1.Pod, jl batchlisters.JobLister) (bool, time.Duration, error) {
	if pod.Status.Phase != corev1.PodPending {
		return false, 0, nil
	}
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != "Job" {
		return false, 0, nil
	}
	job, err := jl.Jobs(pod.Namespace).Get(owner.Name)
	if apierrors.IsNotFound(err) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if !w.selected(job) {
		return false, 0, nil
	}
	var s failure.Signals
	w.podSignals(ctx, pod, job.Annotations, &s)
	if !stuckReason(s.Reason) {
		return false, 0, nil
	}
	age := time.Since(pod.CreationTimestamp.Time)
	if age < w.o.PendingGrace {
		return true, w.o.PendingGrace - age, nil // look again when the grace is over
	}
	ev := &failure.Event{ID: StuckEventID(job), Time: time.Now().UTC(), Source: "kubernetes",
		Job: w.jobOf(job), Failure: s}
	ev.Failure.DurationSeconds = age.Seconds()
	if w.sent(ev.ID) {
		return false, 0, nil
	}
	w.keepSpec(ctx, job)
	return false, 0, w.publish(ctx, ev)
}

// stuckReason reports whether a pod's reason means it will not start by itself soon.
func stuckReason(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", corev1.PodReasonUnschedulable:
		return true
	}
	return false
}

// keepSpec keeps the failed Job's spec, for a fix submitted after it is gone. It is
// a fallback: a failure to keep it is logged, and the failure still reported.
func (w *Watcher) keepSpec(ctx context.Context, job *batchv1.Job) {
	if w.o.Specs == nil {
		return
	}
	if err := w.o.Specs.KeepSpec(ctx, job); err != nil {
		w.o.Log.Warn("watch: could not keep the failed job's spec; its fix needs the job to exist", "job", job.Namespace+"/"+job.Name, "err", err)
	}
}

func (w *Watcher) publish(ctx context.Context, ev *failure.Event) error {
	if err := w.pub.Publish(ctx, ev); err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	w.published.add(ev.ID, time.Now())
	w.o.Log.Info("failure published", "event", ev.ID, "job", ev.Job.Namespace+"/"+ev.Job.Name, "reason", ev.Failure.Reason)
	return nil
}

func (w *Watcher) sent(id string) bool { return w.published.has(id) }

func (w *Watcher) selected(job *batchv1.Job) bool { return w.selectedLabels(job.Labels) }

// appsListers returns the ReplicaSet and Deployment listers covering ns (callers hold w.mu).
func (w *Watcher) appsListers(ns string) (appslisters.ReplicaSetLister, appslisters.DeploymentLister) {
	if rs, ok := w.sets[ns]; ok {
		return rs, w.deploys[ns]
	}
	return w.sets[metav1.NamespaceAll], w.deploys[metav1.NamespaceAll]
}

// lister returns the listers of the informer covering ns (callers hold w.mu).
func (w *Watcher) lister(ns string) (batchlisters.JobLister, corelisters.PodLister) {
	if jl, ok := w.jobs[ns]; ok {
		return jl, w.pods[ns]
	}
	return w.jobs[metav1.NamespaceAll], w.pods[metav1.NamespaceAll]
}
