package remediate

import (
	"context"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderOptions configure leader election on a Lease.
type LeaderOptions struct {
	Namespace, Name string
	// Identity names this replica (e.g. the pod name); it must differ between replicas.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod default to 15 s, 10 s and 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       *slog.Logger
}

// Lead runs work while this replica holds the Lease, with a context that is cancelled
// the moment the lease is lost (work must stop acting then), and competes again
// after each loss, until ctx ends.
func Lead(ctx context.Context, client kubernetes.Interface, o LeaderOptions, work func(ctx context.Context)) {
	if o.LeaseDuration == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	for ctx.Err() == nil {
		// client-go starts OnStartedLeading in a goroutine and does not wait for it:
		// wait here, so that this replica never runs two copies of work (after a lost
		// renewal it would compete, and win, again at once). Between the lease's
		// release and work's return, the ledger's submission claims keep a new leader
		// from submitting what this one is still submitting.
		var (
			mu      sync.Mutex
			running chan struct{}
		)
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   o.LeaseDuration,
			RenewDeadline:   o.RenewDeadline,
			RetryPeriod:     o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            o.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					done := make(chan struct{})
					mu.Lock()
					running = done
					mu.Unlock()
					defer close(done)
					o.Log.Info("leading: acting on the cluster", "identity", o.Identity)
					work(ctx)
				},
				OnStoppedLeading: func() { o.Log.Info("not leading: stopped acting", "identity", o.Identity) },
			},
		})
		mu.Lock()
		done := running
		mu.Unlock()
		if done != nil {
			<-done
		}
	}
}
