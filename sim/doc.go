// Package sim is the workload simulator: the ground truth autofix is judged against.
//
// A scenario (YAML) describes a population of recurring jobs — their kinds, true
// memory and per-GPU memory needs, how people provision them, how long they run, how
// their needs drift from run to run, and how often they fail for reasons resources do
// not explain. The simulator runs the jobs, fails them the way a cluster would (an
// OOMKilled container with its usage at the limit, a CUDA out-of-memory traceback, a
// preemption, an Xid on a bad node, a deadline) and hands each failure, as a
// FailureEvent encoded and decoded exactly as Kafka carries it, to a retry policy.
//
// The failure text (reason, exit code, message, log tail) is the simulator's own by
// default, the text the rules were written for. A scenario with text: real gives each
// failure instead the text of a real labelled message of its cause's category, drawn
// with the scenario's seed from the messages embedded from realtext/messages.jsonl;
// the job, its usage and the ground truth stay the simulator's, so that a policy
// whose classifier misreads the real text pays for it as it would on a cluster.
//
// What the cluster measures of usage is the scenario's telemetry: all (the default: a
// cluster with Prometheus and the DCGM exporter, whose failures and outcomes carry
// peak host memory, per-GPU memory and local storage), failures (a cluster without
// metrics, as the Kubernetes watcher sees it: an OOMKilled run's limit as its peak,
// the limit an eviction names, nothing else, nothing on outcomes) or none.
//
// Policies see only what a real cluster gives them: the FailureEvent and the observed
// outcomes of earlier runs of the same job (failure.Outcome). The true needs stay
// inside this package; the oracle policy, which knows them, is the yardstick of cost.
// Metrics compare policies on fix rate, first-retry fix rate, cost against the oracle,
// wasted cost and false retries; Result.Price turns a result into the cost per fixed
// failure, with what the policy left unfixed re-run by hand at the oracle's price and
// a person's time (OnCall) added.
//
// It does not classify, predict or optimise: the policies under test do.
package sim
