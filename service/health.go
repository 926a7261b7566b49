package service

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/remediate"
)

// health answers /healthz (the process is up) and /readyz (it can do its work).
type health struct {
	store      *ledger.Store
	consumer   *ingest.Consumer
	brokers    []string
	security   ingest.Security
	kube       kubernetes.Interface
	simulated  bool
	election   *remediate.LeaderStatus // nil: no election (no cluster, or the simulated one)
	consuming  atomic.Bool
	kafkaErr   atomic.Pointer[string]
	clusterErr atomic.Pointer[string]
}

// probe checks the brokers and the cluster every 2 s until ctx ends.
func (h *health) probe(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		msg := ""
		if err := ingest.Reachable(ctx, h.brokers, h.security, 2*time.Second); err != nil {
			msg = err.Error()
		}
		if old := h.kafkaErr.Swap(&msg); (old == nil || *old == "") != (msg == "") {
			if msg != "" {
				log.Warn("kafka unreachable", "err", msg)
			} else {
				log.Info("kafka reachable")
			}
		}
		if h.kube != nil && !h.simulated {
			cmsg := ""
			vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := h.kube.Discovery().RESTClient().Get().AbsPath("/version").Do(vctx).Error(); err != nil {
				cmsg = err.Error()
			}
			cancel()
			if old := h.clusterErr.Swap(&cmsg); (old == nil || *old == "") != (cmsg == "") && cmsg != "" {
				log.Warn("cluster unreachable", "err", cmsg)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ready answers /readyz: the broker, the ledger, the consumer, the cluster and, with
// a cluster, leader election. Another replica leading is ready; an election this one
// cannot take part in is not, since then no replica may be acting. The details
// (errors' texts) are shown only to callers with a token.
func (h *health) ready(ctx context.Context) (bool, map[string]api.Check) {
	ok := api.Check{State: api.CheckOK, Detail: "ok"}
	failing := func(detail string) api.Check { return api.Check{State: api.CheckFailing, Detail: detail} }
	notReady := func(detail string) api.Check { return api.Check{State: api.CheckNotReady, Detail: detail} }
	checks := map[string]api.Check{"kafka": ok, "ledger": ok, "consumer": ok, "cluster": ok}
	if p := h.kafkaErr.Load(); p == nil {
		checks["kafka"] = notReady("not checked yet")
	} else if *p != "" {
		checks["kafka"] = failing(*p)
	}
	if err := h.store.Ping(ctx); err != nil {
		checks["ledger"] = failing(err.Error())
	}
	switch {
	case !h.consuming.Load():
		checks["consumer"] = notReady("not consuming")
	case h.consumer.Stalled():
		checks["consumer"] = failing("failing to record events; retrying")
	case h.consumer.FetchError() != "":
		checks["consumer"] = failing("fetch failing: " + h.consumer.FetchError())
	}
	switch p := h.clusterErr.Load(); {
	case h.kube == nil:
		checks["cluster"] = api.Check{State: api.CheckOK, Detail: "none (shadow mode)"}
	case h.simulated:
		checks["cluster"] = api.Check{State: api.CheckOK, Detail: "ok (simulated)"}
	case p == nil:
		checks["cluster"] = notReady("not checked yet")
	case *p != "":
		checks["cluster"] = failing(*p)
	}
	if h.election != nil {
		switch started, leading, holder, err := h.election.State(); {
		case !started:
			checks["leader"] = notReady("not elected yet")
		case err != nil:
			checks["leader"] = failing("leader election cannot run: " + err.Error())
		case leading:
			checks["leader"] = api.Check{State: api.CheckOK, Detail: "leading"}
		case holder != "" && holder == h.election.Self():
			// client-go starts leading in a goroutine of its own once the Lease is won.
			checks["leader"] = api.Check{State: api.CheckOK, Detail: "won the lease; starting to lead"}
		default:
			checks["leader"] = api.Check{State: api.CheckOK, Detail: "following " + holder}
		}
	}
	ready := true
	for _, c := range checks {
		ready = ready && c.State == api.CheckOK
	}
	return ready, checks
}
