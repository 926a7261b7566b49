package policy

import (
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	"github.com/autofix/autofix/failure"
)

// Verdict is what a Decision allows.
type Verdict string

// Verdicts.
const (
	// Auto applies the chosen option without a person.
	Auto Verdict = "auto"
	// Review keeps the fix for a person to approve or reject.
	Review Verdict = "review"
	// Deny refuses to retry.
	Deny Verdict = "deny"
)

// Valid reports whether v is a known verdict.
func (v Verdict) Valid() bool { return v == Auto || v == Review || v == Deny }

// Rule routes the recommendations it matches to a verdict. Empty match fields match
// everything.
type Rule struct {
	// Name identifies the rule in decisions' reasons.
	Name       string             `yaml:"name"`
	Categories []failure.Category `yaml:"categories,omitempty"`
	// Namespaces are path.Match patterns, e.g. "prod-*".
	Namespaces []string          `yaml:"namespaces,omitempty"`
	Kinds      []failure.JobKind `yaml:"kinds,omitempty"`
	// MinConfidence is the least classification confidence the rule matches.
	MinConfidence float64 `yaml:"minConfidence,omitempty"`
	// MaxCostMultiple, when set, is the largest cost of the chosen option, as a multiple
	// of the failed configuration's, that the rule matches.
	MaxCostMultiple float64 `yaml:"maxCostMultiple,omitempty"`
	Verdict         Verdict `yaml:"verdict"`
	// Final, on a review rule, keeps its fixes for review even when their kind has
	// been granted autonomy (see Autonomy): e.g. every fix in a production namespace.
	Final bool `yaml:"final,omitempty"`
}

// Config is the policy: rules in order (the first match wins), the verdict when none
// matches, and the budgets no rule overrides.
type Config struct {
	Rules []Rule `yaml:"rules"`
	// Default is the verdict when no rule matches.
	Default Verdict `yaml:"default"`
	// MaxAttempts is the most runs of one job chain, the original included; a failure
	// of the last one is not retried.
	MaxAttempts int `yaml:"maxAttempts"`
	// MaxCostMultiple is the largest cost multiple any fix may have, reviewed or not.
	MaxCostMultiple float64 `yaml:"maxCostMultiple"`
	// RatePerMinute caps automatic submissions cluster-wide; Burst is the bucket size.
	RatePerMinute float64 `yaml:"ratePerMinute"`
	Burst         int     `yaml:"burst"`
	// DryRun decides and records everything and never acts.
	DryRun bool `yaml:"dryRun"`
	// Pods are the pod-safety switches (see Pods); all off by default.
	Pods Pods `yaml:"pods"`
	// Autonomy are the thresholds of graduated autonomy: which kinds of fix are
	// proposed to apply without review, and when a granted one goes back to it.
	Autonomy Autonomy `yaml:"autonomy"`
}

// Default returns the policy autofix runs with when none is configured: resource and
// transient fixes the classifier is sure of apply on their own if they at most double
// the cost; deployments, anything costlier or less certain wait for review.
func Default() Config {
	return Config{
		Rules: []Rule{
			{Name: "deployments-reviewed", Kinds: []failure.JobKind{failure.Deployment}, Verdict: Review},
			{Name: "resource-fixes", Categories: []failure.Category{failure.OOMMemory, failure.OOMGPU, failure.DiskFull, failure.Timeout},
				MinConfidence: 0.7, MaxCostMultiple: 2, Verdict: Auto},
			{Name: "transient", Categories: []failure.Category{failure.Preempted, failure.NetworkTransient, failure.Hardware,
				failure.SchedulingCapacity, failure.DependencyUnavailable, failure.ImagePull},
				MinConfidence: 0.7, MaxCostMultiple: 1.5, Verdict: Auto},
		},
		Default:         Review,
		MaxAttempts:     5,
		MaxCostMultiple: 4,
		RatePerMinute:   600,
		Burst:           100,
		Autonomy:        DefaultAutonomy(),
	}
}

// Validate reports the first problem, naming the field.
func (c *Config) Validate() error {
	if !c.Default.Valid() {
		return fmt.Errorf("policy.default: unknown verdict %q (want auto, review or deny)", c.Default)
	}
	if c.MaxAttempts < 1 {
		return fmt.Errorf("policy.maxAttempts: %d, want at least 1", c.MaxAttempts)
	}
	if !(c.MaxCostMultiple >= 1) {
		return fmt.Errorf("policy.maxCostMultiple: %g, want a number of at least 1", c.MaxCostMultiple)
	}
	if !(c.RatePerMinute > 0) || math.IsInf(c.RatePerMinute, 1) {
		return fmt.Errorf("policy.ratePerMinute: %g, want a positive number", c.RatePerMinute)
	}
	if c.Burst < 1 {
		return fmt.Errorf("policy.burst: %d, want at least 1", c.Burst)
	}
	if err := c.Pods.Validate(); err != nil {
		return err
	}
	if err := c.Autonomy.Validate(); err != nil {
		return err
	}
	for i, r := range c.Rules {
		field := fmt.Sprintf("policy.rules[%d]", i)
		if r.Name == "" {
			return fmt.Errorf("%s.name: required", field)
		}
		if !r.Verdict.Valid() {
			return fmt.Errorf("%s.verdict: unknown verdict %q (want auto, review or deny)", field, r.Verdict)
		}
		for _, cat := range r.Categories {
			if !cat.Valid() {
				return fmt.Errorf("%s.categories: unknown category %q", field, cat)
			}
		}
		for _, ns := range r.Namespaces {
			if _, err := path.Match(ns, ""); err != nil {
				return fmt.Errorf("%s.namespaces: bad pattern %q", field, ns)
			}
		}
		if !(r.MinConfidence >= 0 && r.MinConfidence <= 1) {
			return fmt.Errorf("%s.minConfidence: %g, want within [0, 1]", field, r.MinConfidence)
		}
		if !(r.MaxCostMultiple >= 0) {
			return fmt.Errorf("%s.maxCostMultiple: %g, want a positive number (0: no cap)", field, r.MaxCostMultiple)
		}
		if r.Final && r.Verdict != Review {
			return fmt.Errorf("%s.final: only a review rule is final (its verdict is %s)", field, r.Verdict)
		}
	}
	return nil
}

// Input is what a decision is made on.
type Input struct {
	Event          *failure.Event
	Recommendation *failure.Recommendation
	// Runs is how many runs the job chain has had, the failed one included.
	Runs int
	// Paused is the kill switch: nothing applies automatically while it is on.
	Paused bool
	// Grant is the autonomy granted to the kind of fix (the recommendation's
	// category on the event's template, for the event's kind of job), nil if none:
	// a fix the rules would keep for review applies on its own.
	Grant *Grant
}

// Decision is the policy's answer, with its reason for people.
type Decision struct {
	Verdict Verdict
	Reason  string
	// Grant is the Seq of the autonomy grant that made the verdict Auto where the
	// rules would have kept the fix for review; 0 when the rules decided. The
	// ledger records it with the fix (ledger.Entry.Grant).
	Grant int64
}

// Decide applies the policy to one recommendation.
func (c *Config) Decide(in Input) Decision {
	rec := in.Recommendation
	cl := &rec.Classification
	opt, ok := rec.ChosenOption()
	switch {
	case cl.Category == failure.Unknown:
		return Decision{Verdict: Review, Reason: "the failure is not recognised: a person decides whether and how to retry"}
	case !ok:
		return Decision{Verdict: Deny, Reason: "not retrying: " + firstSentence(rec.Explanation)}
	case in.Runs >= c.MaxAttemptsFor(in.Event):
		return Decision{Verdict: Deny, Reason: fmt.Sprintf("budget: the job chain has had %d runs, the most allowed is %d", in.Runs, c.MaxAttemptsFor(in.Event))}
	case opt.CostMultiple > c.MaxCostMultiple:
		return Decision{Verdict: Deny, Reason: fmt.Sprintf("budget: the fix costs %.2fx the failed run, over the cap of %.2fx", opt.CostMultiple, c.MaxCostMultiple)}
	}
	d := Decision{Verdict: c.Default, Reason: "no policy rule matched"}
	final := false
	for i := range c.Rules {
		if r := &c.Rules[i]; r.matches(in.Event, cl, opt.CostMultiple) {
			d, final = Decision{Verdict: r.Verdict, Reason: "policy rule " + r.Name}, r.Final
			break
		}
	}
	d = c.grantApplies(&in, d, final)
	if d.Verdict == Auto && in.Paused {
		return Decision{Verdict: Review, Reason: d.Reason + " would apply it, but automatic actions are paused"}
	}
	return d
}

func (r *Rule) matches(ev *failure.Event, cl *failure.Classification, costMultiple float64) bool {
	if len(r.Categories) > 0 && !contains(r.Categories, cl.Category) {
		return false
	}
	if len(r.Kinds) > 0 && !contains(r.Kinds, ev.Job.Kind) {
		return false
	}
	if len(r.Namespaces) > 0 && !matchAny(r.Namespaces, ev.Job.Namespace) {
		return false
	}
	if cl.Confidence < r.MinConfidence {
		return false
	}
	return r.MaxCostMultiple == 0 || costMultiple <= r.MaxCostMultiple
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// LabelMaxAttempts is a job label that lowers its chain's attempt budget (a pipeline stage's
// retry policy); it never raises it above MaxAttempts.
const LabelMaxAttempts = "autofix.io/max-attempts"

// MaxAttemptsFor is the most runs ev's chain may have: the policy's budget, or the
// job's own lower one.
func (c *Config) MaxAttemptsFor(ev *failure.Event) int {
	if n, err := strconv.Atoi(ev.Job.Labels[LabelMaxAttempts]); err == nil && n > 0 && n < c.MaxAttempts {
		return n
	}
	return c.MaxAttempts
}
