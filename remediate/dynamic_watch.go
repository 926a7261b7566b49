package remediate

import (
	"context"
	"fmt"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// dynamicWatch watches one custom resource that autofix reads as unstructured
// objects (RayJobs, Workflows): a keyedWatch of dynamic informers, each object
// handed to sync. An object that is gone is passed over: a workload that is gone is
// not re-created.
type dynamicWatch struct {
	kind string // as the logs name it: "rayjob", "workflow"
	gvr  schema.GroupVersionResource
	// unsynced is the question the log asks when a namespace's informer has not
	// synced after a minute (no CRD, or no RoleBinding of the kind's role there).
	unsynced string
	sync     func(ctx context.Context, u *unstructured.Unstructured) error
}

// run watches namespaces (empty: all) through dyn until ctx ends.
func (d dynamicWatch) run(ctx context.Context, dyn dynamic.Interface, namespaces []string, selector string, log *slog.Logger) error {
	return keyedWatch[cache.GenericLister]{kind: d.kind, resource: d.gvr.Resource, unsynced: d.unsynced,
		open: func(ns string) (informerFactory, cache.SharedInformer, cache.GenericLister) {
			f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, ns, nil)
			inf := f.ForResource(d.gvr)
			return f, inf.Informer(), inf.Lister()
		},
		sync: func(ctx context.Context, l cache.GenericLister, key cache.ObjectName) error {
			obj, err := l.ByNamespace(key.Namespace).Get(key.Name)
			switch {
			case apierrors.IsNotFound(err):
				return nil
			case err != nil:
				return err
			}
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return fmt.Errorf("%s %s: the informer holds a %T", d.kind, key, obj)
			}
			return d.sync(ctx, u)
		},
	}.run(ctx, namespaces, selector, log)
}
