package remediate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// informerFactory is what a generated or a dynamic informer factory offers.
type informerFactory interface {
	Start(stopCh <-chan struct{})
	Shutdown()
}

// keyedWatch is the watch of one workload kind that autofix does not cache the pods
// of (JobSets, RayJobs, Workflows): an informer per watched namespace and one work
// queue of the objects' keys, each handed to sync with the lister of its namespace
// once that namespace's cache has synced. Success forgets a key; an error requeues it
// with backoff for as long as it lasts (Kafka or the ledger down).
type keyedWatch[L any] struct {
	kind     string // as settle's log names it: "jobset", "rayjob"
	resource string // as the other logs name it: "jobsets", "rayjobs"
	// unsynced is the question the log asks when a namespace's informer has not
	// synced after a minute (no CRD, or no RoleBinding of the kind's role there).
	unsynced string
	// open returns namespace ns's informer factory (not started), the informer to
	// watch and its lister.
	open func(ns string) (informerFactory, cache.SharedInformer, L)
	// sync handles the object of key, read through l; an object that is gone is for
	// sync to pass over.
	sync func(ctx context.Context, l L, key cache.ObjectName) error
}

// keyedController is one run of a keyedWatch.
type keyedController[L any] struct {
	keyedWatch[L]
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[cache.ObjectName]
	listers map[string]L // by namespace ("" for all)

	mu    sync.Mutex
	ready map[string]bool
}

// run watches namespaces (empty: all) until ctx ends.
func (w keyedWatch[L]) run(ctx context.Context, namespaces []string, selector string, log *slog.Logger) error {
	c := &keyedController[L]{keyedWatch: w, log: log, listers: map[string]L{}, ready: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]())}
	ctx, cancel := context.WithCancel(ctx)
	var (
		factories []informerFactory
		wg        sync.WaitGroup
	)
	defer func() {
		cancel()
		c.queue.ShutDown()
		wg.Wait()
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(old, cur any) {
			o, err1 := meta.Accessor(old)
			n, err2 := meta.Accessor(cur)
			if err1 == nil && err2 == nil && o.GetResourceVersion() == n.GetResourceVersion() {
				return // a resync
			}
			c.enqueue(cur)
		},
	}
	for _, ns := range watchedNamespaces(namespaces) {
		f, inf, l := w.open(ns)
		factories = append(factories, f)
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("watch the %s of namespace %q: %w", w.resource, ns, err)
		}
		c.listers[ns] = l
		wg.Go(func() { c.await(ctx, ns, reg.HasSynced) })
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	wg.Go(func() {
		<-ctx.Done()
		c.queue.ShutDown()
	})
	log.Info("watching "+w.resource, "namespaces", watchedNamespaces(namespaces), "selector", selector)
	for c.processNext(ctx) {
	}
	return nil
}

// await marks namespace ns ready once its informer has synced; the log says so
// after a minute when it has not.
func (c *keyedController[L]) await(ctx context.Context, ns string, synced cache.InformerSynced) {
	warn := time.AfterFunc(time.Minute, func() {
		c.log.Error("watcher: "+c.resource+" not synced after a minute; "+c.unsynced, "namespace", cmp.Or(ns, "(all)"))
	})
	defer warn.Stop()
	if !cache.WaitForCacheSync(ctx.Done(), synced) {
		return
	}
	c.mu.Lock()
	c.ready[ns] = true
	c.mu.Unlock()
}

func (c *keyedController[L]) enqueue(obj any) {
	if m, err := meta.Accessor(obj); err == nil {
		c.queue.Add(cache.ObjectName{Namespace: m.GetNamespace(), Name: m.GetName()})
	}
}

// lister returns what covers namespace ns, whether anything does, and whether its
// cache has synced.
func (c *keyedController[L]) lister(ns string) (l L, found, ready bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.listers[ns]; ok {
		return l, true, c.ready[ns]
	}
	l, found = c.listers[metav1.NamespaceAll]
	return l, found, c.ready[metav1.NamespaceAll]
}

// processNext handles one key; false once the queue is shut down.
func (c *keyedController[L]) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if ctx.Err() != nil {
		return false
	}
	l, found, ready := c.lister(key.Namespace)
	switch {
	case !found:
		c.queue.Forget(key)
		return true
	case !ready:
		c.queue.AddAfter(key, time.Second)
		return true
	}
	settle(ctx, c.queue, key, 0, c.sync(ctx, l, key), c.log, c.kind)
	return true
}
