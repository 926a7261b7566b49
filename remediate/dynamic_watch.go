package remediate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// dynamicWatch watches one custom resource that autofix reads as unstructured
// objects (RayJobs, Workflows), in the shape of the JobSet adapter's watcher: a
// dynamic informer per watched namespace and a work queue of keys, each object
// handed to sync. Success forgets a key; an error requeues it with backoff for as
// long as it lasts (Kafka or the ledger down). An object that is gone is passed
// over: a workload that is gone is not re-created.
type dynamicWatch struct {
	kind string // as the logs name it: "rayjob", "workflow"
	gvr  schema.GroupVersionResource
	// unsynced is the question the log asks when a namespace's informer has not
	// synced after a minute (no CRD, or no RoleBinding of the kind's role there).
	unsynced string
	sync     func(ctx context.Context, u *unstructured.Unstructured) error
}

// dynamicController is one run of a dynamicWatch.
type dynamicController struct {
	dynamicWatch
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[cache.ObjectName]
	listers map[string]cache.GenericLister // by namespace ("" for all)

	mu    sync.Mutex
	ready map[string]bool
}

// run watches namespaces (empty: all) through dyn until ctx ends.
func (d dynamicWatch) run(ctx context.Context, dyn dynamic.Interface, namespaces []string, selector string, log *slog.Logger) error {
	c := &dynamicController{dynamicWatch: d, log: log, listers: map[string]cache.GenericLister{}, ready: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]())}
	ctx, cancel := context.WithCancel(ctx)
	var (
		factories []dynamicinformer.DynamicSharedInformerFactory
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
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, ns, nil)
		factories = append(factories, f)
		inf := f.ForResource(d.gvr)
		reg, err := inf.Informer().AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("watch the %s of namespace %q: %w", d.gvr.Resource, ns, err)
		}
		c.listers[ns] = inf.Lister()
		wg.Go(func() { c.await(ctx, ns, reg.HasSynced) })
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	wg.Go(func() {
		<-ctx.Done()
		c.queue.ShutDown()
	})
	log.Info("watching "+d.gvr.Resource, "namespaces", watchedNamespaces(namespaces), "selector", selector)
	for c.processNext(ctx) {
	}
	return nil
}

// await marks namespace ns ready once its informer has synced; the log says so
// after a minute when it has not.
func (c *dynamicController) await(ctx context.Context, ns string, synced cache.InformerSynced) {
	warn := time.AfterFunc(time.Minute, func() {
		c.log.Error("watcher: "+c.gvr.Resource+" not synced after a minute; "+c.unsynced, "namespace", cmp.Or(ns, "(all)"))
	})
	defer warn.Stop()
	if !cache.WaitForCacheSync(ctx.Done(), synced) {
		return
	}
	c.mu.Lock()
	c.ready[ns] = true
	c.mu.Unlock()
}

func (c *dynamicController) enqueue(obj any) {
	if m, err := meta.Accessor(obj); err == nil {
		c.queue.Add(cache.ObjectName{Namespace: m.GetNamespace(), Name: m.GetName()})
	}
}

// lister returns what covers namespace ns, and whether its cache has synced.
func (c *dynamicController) lister(ns string) (cache.GenericLister, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.listers[ns]; ok {
		return l, c.ready[ns]
	}
	return c.listers[metav1.NamespaceAll], c.ready[metav1.NamespaceAll]
}

// processNext handles one key; false once the queue is shut down.
func (c *dynamicController) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	if ctx.Err() != nil {
		return false
	}
	l, ready := c.lister(key.Namespace)
	switch {
	case l == nil:
		c.queue.Forget(key)
		return true
	case !ready:
		c.queue.AddAfter(key, time.Second)
		return true
	}
	obj, err := l.ByNamespace(key.Namespace).Get(key.Name)
	switch {
	case apierrors.IsNotFound(err):
		err = nil
	case err == nil:
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			err = fmt.Errorf("%s %s: the informer holds a %T", c.kind, key, obj)
			break
		}
		err = c.sync(ctx, u)
	}
	settle(ctx, c.queue, key, 0, err, c.log, c.kind)
	return true
}
