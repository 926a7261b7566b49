package remediate

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	// Status, if set, is kept current: leading, following another replica, or
	// failing to take part at all (the Lease cannot be read or written).
	Status *LeaderStatus
	Log    *slog.Logger
}

// LeaderStatus is where a replica stands in the election. Safe for concurrent use.
type LeaderStatus struct {
	mu      sync.Mutex
	started bool
	leading bool
	holder  string
	err     error
	// wrote: err is a failed write (create or update) of the Lease, which a read of
	// it does not clear unless another replica is seen renewing it.
	wrote bool
	seen  []byte // the Lease's record as last read
	self  string // this replica's identity, once it takes part
}

// NewLeaderStatus is the status of the replica of identity self (Lead sets it from
// LeaderOptions.Identity too).
func NewLeaderStatus(self string) *LeaderStatus { return &LeaderStatus{self: self} }

// Self is this replica's identity in the election ("" before it takes part): a
// holder of the Lease that is Self but not leading has won it and is about to lead.
func (s *LeaderStatus) Self() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.self
}

// State reports whether this replica leads, which replica holds the Lease as far as
// this one last read it, and the error that keeps it from taking part: nil once a
// write of the Lease succeeds, or a read shows another replica holding and renewing
// it (a failed read is cleared by any read that succeeds). started is false until
// the first attempt has ended.
func (s *LeaderStatus) State() (started, leading bool, holder string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started, s.leading, s.holder, s.err
}

func (s *LeaderStatus) setLeading(v bool) {
	s.mu.Lock()
	s.leading = v
	s.mu.Unlock()
}

// Record records the result of a read or write of the Lease by holder (or "" when
// it failed); it reports whether err is news (a first failure, or another one than
// before) to be logged. The election calls it; so may a test of what reads s.
func (s *LeaderStatus) Record(holder string, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.record(holder, err, false)
}

func (s *LeaderStatus) record(holder string, err error, write bool) bool {
	news := err != nil && (s.err == nil || s.err.Error() != err.Error())
	s.started, s.err, s.wrote = true, err, write && err != nil
	if err == nil && holder != "" {
		s.holder = holder
	}
	return news
}

// read records a read of the Lease whose record (raw) names holder. It clears a
// failed read; a failed write only if another replica holds the Lease and renews
// it (its record changed since the last read, or is seen for the first time): a
// stale Lease, which this replica must write to take over, leaves the write's
// failure standing.
func (s *LeaderStatus) read(holder, self string, raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	renewing := holder != "" && holder != self && !bytes.Equal(raw, s.seen)
	s.seen = bytes.Clone(raw)
	if s.wrote && !renewing {
		s.started = true
		if holder != "" {
			s.holder = holder
		}
		return
	}
	s.record(holder, nil, false)
}

// write records a write of the Lease for holder; it reports whether err is news.
func (s *LeaderStatus) write(holder string, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.record(holder, err, true)
}

// statusLock is the Lease lock with its reads' and writes' outcomes recorded: client-
// go's election retries a failing lock forever and only says so in its own log.
type statusLock struct {
	resourcelock.Interface
	status *LeaderStatus
	where  string
	log    *slog.Logger
}

func (l statusLock) report(holder string, err error, write bool) {
	var news bool
	if write {
		news = l.status.write(holder, err)
	} else {
		news = l.status.Record(holder, err)
	}
	if news {
		l.log.Error("leader election cannot run: nothing will be acted on until it can (another replica leading is fine; "+
			"this is not). Check that the namespace of kubernetes.leaseNamespace exists and that autofix may get, create "+
			"and update the Lease", "lease", l.where, "err", err)
	}
}

func (l statusLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	switch {
	case apierrors.IsNotFound(err): // not created yet: Create comes next
	case err != nil:
		l.report("", err, false)
	default:
		l.status.read(rec.HolderIdentity, l.Identity(), raw)
	}
	return rec, raw, err
}

func (l statusLock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, rec)
	l.wrote(rec.HolderIdentity, err)
	return err
}

func (l statusLock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, rec)
	l.wrote(rec.HolderIdentity, err)
	return err
}

// wrote records a write's outcome. Another replica's create or update coming first
// (AlreadyExists, Conflict) is the election at work, and the API server checks
// permissions before it says so: the write could be made.
func (l statusLock) wrote(holder string, err error) {
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		l.report("", nil, true)
		return
	}
	l.report(holder, err, true)
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
	if o.Status == nil {
		o.Status = &LeaderStatus{}
	}
	o.Status.mu.Lock()
	o.Status.self = o.Identity
	o.Status.mu.Unlock()
	lock := statusLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}, status: o.Status, where: o.Namespace + "/" + o.Name, log: o.Log}
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
					o.Status.setLeading(true)
					defer o.Status.setLeading(false)
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
