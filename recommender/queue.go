package recommender

import (
	"fmt"
	"slices"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/optimizer"
)

// Queues tells what quota the Kueue queue of a failed workload has: the
// recommender keeps a retry of a queued workload within it (SetQueues).
type Queues interface {
	// Room is the quota of the ClusterQueue behind ev's workload's LocalQueue; ok
	// is false when ev names no queue or the queue is not known (not read yet, or
	// gone), and then no queue limits the retry.
	Room(ev *failure.Event) (room QueueRoom, ok bool)
}

// QueueRoom is a ClusterQueue's quota as one pod of a retry sees it.
type QueueRoom struct {
	// ClusterQueue and LocalQueue name the queues, for explanations.
	ClusterQueue, LocalQueue string
	// Now is what is left of the quota: a retry within it can be admitted at once.
	Now optimizer.QueueQuota
	// Ever is what the queue could admit with nothing else running (its nominal
	// quota and what it may borrow): a retry beyond it is never admitted.
	Ever optimizer.QueueQuota
}

// SetQueues makes recommendations of queued workloads keep their retries within
// their queue's quota, as q reports it. Safe to call while recommendations are
// being made; nil stops it.
func (r *Recommender) SetQueues(q Queues) {
	if q == nil {
		r.queues.Store(nil)
		return
	}
	r.queues.Store(&q)
}

// solve solves prob within the quota of ev's Kueue queue, if it has one: within
// what the queue has left now when that holds a fix as likely to work as the
// target, otherwise within what it could ever admit when that holds a likelier fix,
// which then waits in the queue for quota (the note, for the explanation, says so).
// A retry no quota of the queue could ever admit is never proposed.
func (r *Recommender) solve(prob optimizer.Problem, ev *failure.Event) (res optimizer.Result, note string) {
	q := r.queues.Load()
	if q == nil {
		return prob.Solve(), ""
	}
	room, ok := (*q).Room(ev)
	if !ok {
		return prob.Solve(), ""
	}
	base := slices.Clip(prob.Filters)
	prob.Filters = append(base, room.Now)
	now := prob.Solve()
	if now.Chosen >= 0 && now.Options[0].PFix >= r.opts.MinPSuccess {
		return now, ""
	}
	prob.Filters = append(base, room.Ever)
	ever := prob.Solve()
	const better = 0.02 // what waiting for quota must gain over a fix admitted now
	if ever.Chosen < 0 || now.Chosen >= 0 && ever.Options[0].PFix <= now.Options[0].PFix+better {
		return now, ""
	}
	return ever, fmt.Sprintf(" It needs more than ClusterQueue %s has left now, so it waits in queue %s until Kueue admits it.",
		room.ClusterQueue, room.LocalQueue)
}
