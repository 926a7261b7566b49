package remediate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appslisters "k8s.io/client-go/listers/apps/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/autofix/autofix/failure"
)

// objectKind is the kind of object a queue key names.
type objectKind uint8

const (
	jobKey objectKind = iota + 1
	podKey
	deploymentKey
	// deletedJobKey names a deleted Job by uid; its last state is in the
	// watcher's gone store. A new Job of the same name is another key.
	deletedJobKey
)

// queueKey is what the work queue holds.
type queueKey struct {
	kind      objectKind
	namespace string
	name      string
	uid       types.UID // deletedJobKey only
}

func (k queueKey) String() string {
	kind := map[objectKind]string{jobKey: "job", podKey: "pod", deploymentKey: "deployment", deletedJobKey: "deleted job"}[k.kind]
	if k.uid != "" {
		return fmt.Sprintf("%s %s/%s (uid %s)", kind, k.namespace, k.name, k.uid)
	}
	return kind + " " + k.namespace + "/" + k.name
}

// retriesBeforeError is how many retries of a key are logged as warnings before
// they are logged as errors: with the backoff doubling from 5 ms, about 20 minutes.
const retriesBeforeError = 18

// controller is one Run of a Watcher: the informers' listers, the event handlers it
// added to them, and its work queue.
type controller struct {
	*Watcher
	scopes map[string]*scope // by namespace ("" for all)
	queue  workqueue.TypedRateLimitingInterface[queueKey]

	mu    sync.Mutex
	ready map[string]bool // namespaces whose caches have synced
}

// scope is what the watcher reads one namespace (or all) through.
type scope struct {
	namespace string
	jobs      batchlisters.JobLister
	pods      corelisters.PodLister
	sets      appslisters.ReplicaSetLister
	deploys   appslisters.DeploymentLister
	synced    []cache.InformerSynced
	added     []handlerRegistration
}

type handlerRegistration struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
}

// newController adds the watcher's event handlers to the informers of sources and
// takes their listers. The informers need not run: tests fill their indexers and
// call sync.
func newController(w *Watcher, sources []Source) (*controller, error) {
	c := &controller{Watcher: w, scopes: map[string]*scope{}, ready: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[queueKey]())}
	for _, src := range sources {
		f := src.Factory
		jobs, pods := f.Batch().V1().Jobs(), f.Core().V1().Pods()
		sets, deploys := f.Apps().V1().ReplicaSets(), f.Apps().V1().Deployments()
		s := &scope{namespace: src.Namespace, jobs: jobs.Lister(), pods: pods.Lister(), sets: sets.Lister(), deploys: deploys.Lister(),
			synced: []cache.InformerSynced{sets.Informer().HasSynced}} // read through its lister only: no handler
		c.scopes[src.Namespace] = s
		for _, h := range []struct {
			informer cache.SharedIndexInformer
			handler  cache.ResourceEventHandler
		}{
			{jobs.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: c.onAdd(jobKey), UpdateFunc: c.onUpdate(jobKey), DeleteFunc: c.onJobDelete}},
			{pods.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: c.onAdd(podKey), UpdateFunc: c.onUpdate(podKey)}},
			{deploys.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: c.onAdd(deploymentKey), UpdateFunc: c.onUpdate(deploymentKey)}},
		} {
			reg, err := h.informer.AddEventHandler(h.handler)
			if err != nil {
				c.close()
				return nil, fmt.Errorf("watch namespace %q: %w", src.Namespace, err)
			}
			s.added = append(s.added, handlerRegistration{h.informer, reg})
			s.synced = append(s.synced, reg.HasSynced)
		}
	}
	return c, nil
}

// close removes the controller's event handlers and shuts its queue down.
func (c *controller) close() {
	for _, s := range c.scopes {
		for _, a := range s.added {
			_ = a.informer.RemoveEventHandler(a.reg) // an informer that stopped has no handlers to remove
		}
		s.added = nil
	}
	c.queue.ShutDown()
}

// run handles keys until ctx ends, and returns when its helpers have stopped. Keys
// of deleted Jobs kept by an earlier Run are queued again.
func (c *controller) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, key := range c.gone.keys() {
		c.queue.Add(key)
	}
	for _, s := range c.scopes {
		wg.Go(func() { c.await(ctx, s) })
	}
	wg.Go(func() {
		<-ctx.Done()
		c.queue.ShutDown()
	})
	for c.processNext(ctx) {
	}
}

// await marks the namespace of s ready once its caches have synced and its
// handlers have had what the informers first listed; until then its keys wait. A
// namespace autofix may not list (a missing RoleBinding) never syncs: the others
// go on, and the log says which one is stuck.
func (c *controller) await(ctx context.Context, s *scope) {
	warn := time.AfterFunc(time.Minute, func() {
		c.o.Log.Error("watcher: namespace not synced after a minute; can autofix list jobs, pods, deployments and replicasets there?",
			"namespace", cmp.Or(s.namespace, "(all)"))
	})
	defer warn.Stop()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return
	}
	c.mu.Lock()
	c.ready[s.namespace] = true
	c.mu.Unlock()
	c.o.Log.Debug("watcher: namespace synced", "namespace", cmp.Or(s.namespace, "(all)"))
}

// isReady reports whether the caches covering namespace ns have synced.
func (c *controller) isReady(ns string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready[metav1.NamespaceAll] || c.ready[ns]
}

// scope returns what covers namespace ns: its own, or the one of all namespaces.
func (c *controller) scope(ns string) *scope {
	if s, ok := c.scopes[ns]; ok {
		return s
	}
	return c.scopes[metav1.NamespaceAll]
}

// onAdd queues the key of a new object (or of one the informer listed).
func (c *controller) onAdd(kind objectKind) func(obj any) {
	return func(obj any) { c.enqueue(kind, obj) }
}

// onUpdate queues the key of a changed object. A resync (the same object again, its
// resource version unchanged) is dropped: nothing changed, and what needs another
// look later has been queued for that time.
func (c *controller) onUpdate(kind objectKind) func(old, cur any) {
	return func(old, cur any) {
		o, err1 := meta.Accessor(old)
		n, err2 := meta.Accessor(cur)
		if err1 == nil && err2 == nil && o.GetResourceVersion() == n.GetResourceVersion() {
			return
		}
		c.enqueue(kind, cur)
	}
}

func (c *controller) enqueue(kind objectKind, obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	if kind == podKey {
		// Only pods of Jobs (which may not start) and of ReplicaSets (which may
		// crash-loop) can tell the watcher anything.
		owner := metav1.GetControllerOfNoCopy(m)
		if owner == nil || (owner.Kind != "Job" && owner.Kind != "ReplicaSet") {
			return
		}
	}
	c.queue.Add(queueKey{kind: kind, namespace: m.GetNamespace(), name: m.GetName()})
}

// onJobDelete keeps a deleted Job's last state, if it has a failure or an
// attempt's outcome to report, until its key is handled.
func (c *controller) onJobDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	job, ok := obj.(*batchv1.Job)
	if !ok || !c.selected(job) {
		return
	}
	_, failed := jobFailed(job)
	_, complete := jobCondition(job, batchv1.JobComplete)
	if report := failed || complete && job.Labels[failure.LabelManaged] == "true"; !report {
		return
	}
	key := queueKey{kind: deletedJobKey, namespace: job.Namespace, name: job.Name, uid: job.UID}
	if !c.gone.put(key, job) {
		c.o.Log.Warn("watch: too many deleted jobs not handled yet; this one is not kept, and what it had to report is lost unless it was handled before",
			"job", job.Namespace+"/"+job.Name, "kept", c.gone.max)
		return
	}
	c.queue.Add(key)
}

// processNext handles one key: success forgets it; a later look (a pod within its
// pending grace) queues it for then; an error requeues it with backoff, for as long
// as it lasts (an outage of Kafka or the ledger), logged as an error once it has
// lasted about 20 minutes.
func (c *controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if ctx.Err() != nil {
		return false // stopping (the queue hands out what it holds until it is empty): the next Run looks again
	}
	if !c.isReady(key.namespace) {
		c.queue.AddAfter(key, time.Second) // its namespace's caches are still filling
		return true
	}
	after, err := c.sync(ctx, key)
	settle(ctx, c.queue, key, after, err, c.o.Log, "key")
	return true
}

// settle tells q how handling key went: on success it is forgotten, and looked at
// again after after when that is positive; an error requeues it with backoff, logged
// as a warning for the first retriesBeforeError retries and as an error after them
// (under the log attribute name); when stopping, nothing is done: the next Run looks
// again.
func settle[K interface {
	comparable
	String() string
}](ctx context.Context, q workqueue.TypedRateLimitingInterface[K], key K, after time.Duration, err error, log *slog.Logger, name string) {
	switch n := q.NumRequeues(key); {
	case err != nil && ctx.Err() != nil:
	case err != nil && n < retriesBeforeError:
		log.Warn("watch: will retry", name, key.String(), "retries", n, "err", err)
		q.AddRateLimited(key)
	case err != nil:
		log.Error("watch: still failing; will retry", name, key.String(), "retries", n, "err", err)
		q.AddRateLimited(key)
	case after > 0:
		q.Forget(key)
		q.AddAfter(key, after)
	default:
		q.Forget(key)
	}
}

// maxGone bounds the deleted Jobs kept until their key is handled.
const maxGone = 10_000

// goneJobs keeps the last state of deleted Jobs until their key is handled, at
// most max of them. It outlives a Run: the next one queues their keys again.
type goneJobs struct {
	mu   sync.Mutex
	max  int
	jobs map[queueKey]*batchv1.Job
}

func newGoneJobs(max int) *goneJobs { return &goneJobs{max: max, jobs: map[queueKey]*batchv1.Job{}} }

// put keeps job under key; false (nothing kept) when max are kept already.
func (g *goneJobs) put(key queueKey, job *batchv1.Job) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.jobs[key]; !ok && len(g.jobs) >= g.max {
		return false
	}
	g.jobs[key] = job
	return true
}

func (g *goneJobs) get(key queueKey) *batchv1.Job {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.jobs[key]
}

func (g *goneJobs) drop(key queueKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.jobs, key)
}

func (g *goneJobs) keys() []queueKey {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]queueKey, 0, len(g.jobs))
	for k := range g.jobs {
		out = append(out, k)
	}
	return out
}
