package failure

import (
	"maps"
	"slices"
)

// Option is a configuration a retry could run with, and what the models predict of it.
type Option struct {
	Resources Resources `json:"resources"`
	// Params are the job's parameters for the retry (tunables changed, others kept).
	Params map[string]string `json:"params,omitempty"`
	// AvoidNodes are nodes the retry must not be scheduled on (hardware failures).
	AvoidNodes []string `json:"avoidNodes,omitempty"`
	// DeadlineSeconds is the retry's activeDeadlineSeconds; 0 keeps the job's own.
	DeadlineSeconds float64 `json:"deadlineSeconds,omitempty"`
	// DelaySeconds is how long to wait before retrying (backoff, capacity).
	DelaySeconds float64 `json:"delaySeconds,omitempty"`
	// Changes say, for people, what differs from the failed run.
	Changes []string `json:"changes"`

	// PSuccess is the predicted probability that a retry with this option succeeds.
	PSuccess float64 `json:"pSuccess"`
	// PFix is the predicted probability that it fixes what failed: that the resource
	// the failure ran out of (memory, GPU memory, time) is now enough. Other risks —
	// a resource that has not failed yet, a transient error — are in PSuccess only.
	PFix float64 `json:"pFix"`
	// RuntimeSeconds is the predicted runtime of a successful run.
	RuntimeSeconds float64 `json:"runtimeSeconds"`
	// RunCost is the cost of one successful run, in dollars.
	RunCost float64 `json:"runCost"`
	// ExpectedCost is the expected cost of retrying with this option, in dollars,
	// including what a failure of this retry and the retry after it would cost.
	ExpectedCost float64 `json:"expectedCost"`
	// CostMultiple is RunCost over the cost of a run of the failed configuration.
	CostMultiple float64 `json:"costMultiple"`
	// Pareto is set when no other option has both a higher PSuccess and a lower
	// ExpectedCost (differences under 2% of P(failure), or 0.1% of cost, do not
	// count: they are noise). The chosen option always has it.
	Pareto bool `json:"pareto"`
}

// SameConfiguration reports whether o and p run the same configuration: resources,
// parameters, nodes avoided, deadline and delay — not what was predicted of them,
// nor how the changes are worded.
func (o *Option) SameConfiguration(p *Option) bool {
	return o.Resources == p.Resources && maps.Equal(o.Params, p.Params) && slices.Equal(o.AvoidNodes, p.AvoidNodes) &&
		o.DeadlineSeconds == p.DeadlineSeconds && o.DelaySeconds == p.DelaySeconds
}

// Recommendation is what autofix advises for one failed job.
type Recommendation struct {
	EventID        string         `json:"eventId"`
	Job            JobRef         `json:"job"`
	Classification Classification `json:"classification"`
	// Retry is whether to retry at all.
	Retry bool `json:"retry"`
	// Options are the configurations considered, best first. Empty when Retry is false.
	Options []Option `json:"options"`
	// Chosen indexes the option to apply; -1 when Retry is false.
	Chosen int `json:"chosen"`
	// Considered is how many configurations the search evaluated.
	Considered int `json:"considered"`
	// Explanation says in plain words what failed, why, and what the chosen option does.
	Explanation string `json:"explanation"`
	// ModelVersion names the models that made the predictions (the artifact's name).
	ModelVersion string `json:"modelVersion,omitempty"`
	// ModelRegistryVersion is those models' version in the model registry; 0 when
	// they did not come from it (the embedded default before the registry is read).
	ModelRegistryVersion int `json:"modelRegistryVersion,omitempty"`
	// Shadow is what a candidate version of the models, evaluated in shadow, would
	// have decided; nil when no candidate is shadowed or the decision did not come
	// from the models (a failure no retry fixes).
	Shadow *Shadow `json:"shadow,omitempty"`
}

// Shadow is a candidate version's view of a decision the active models made: it
// changes nothing, and is scored against the outcome once the attempt ends.
type Shadow struct {
	// Version is the candidate's version in the model registry.
	Version int `json:"version"`
	// PSuccess is the candidate's P(success) of the option the active models chose;
	// 0 when they chose none.
	PSuccess float64 `json:"pSuccess"`
	// Retry is whether the candidate would have retried, and Option what it would
	// have chosen (nil when it would not have retried).
	Retry  bool    `json:"retry"`
	Option *Option `json:"option,omitempty"`
	// Changed says the candidate's decision differs from the active's: it would
	// (not) have retried, or with another configuration.
	Changed bool `json:"changed"`
	// Error says why the candidate decided nothing (its prediction failed); the
	// other fields are then unset, and the decision is not scored.
	Error string `json:"error,omitempty"`
}

// JobRef identifies a job and one attempt of it.
type JobRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Template  string `json:"template"`
	Attempt   int    `json:"attempt"`
}

// ChosenOption returns the option to apply, if any.
func (r Recommendation) ChosenOption() (Option, bool) {
	if !r.Retry || r.Chosen < 0 || r.Chosen >= len(r.Options) {
		return Option{}, false
	}
	return r.Options[r.Chosen], true
}

// Outcome is the observable record of one finished run of a job: the configuration it
// ran with and what the cluster saw. Outcomes of a recurring job (its template) are
// the history the models learn from.
type Outcome struct {
	Template  string            `json:"template"`
	Attempt   int               `json:"attempt"`
	Resources Resources         `json:"resources"`
	Params    map[string]string `json:"params,omitempty"`
	Succeeded bool              `json:"succeeded"`
	// Category is how the failure was classified; empty for a success.
	Category Category `json:"category,omitempty"`
	// DurationSeconds is how long the run lasted, to success or failure.
	DurationSeconds float64 `json:"durationSeconds"`
	// Usage is what the run was measured to use; absent when nothing measured it.
	Usage Usage  `json:"usage,omitzero"`
	Node  string `json:"node,omitempty"`
	// Cost is what the run cost, in dollars.
	Cost float64 `json:"cost"`
	// Unpriced says why Cost is 0, or what it leaves out; empty when the whole run
	// was priced (Signals.Unpriced).
	Unpriced string `json:"unpriced,omitempty"`
}
