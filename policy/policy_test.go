package policy

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

func input(cat failure.Category, conf, cost float64, kind failure.JobKind, ns string) Input {
	rec := &failure.Recommendation{
		Classification: failure.Classification{Category: cat, Confidence: conf, Retryable: cat.DefaultRetryable()},
		Chosen:         -1, Explanation: "The job's code raised an error. Retrying would fail again.",
	}
	if cat.DefaultRetryable() {
		rec.Retry, rec.Chosen = true, 0
		rec.Options = []failure.Option{{CostMultiple: cost}}
	}
	return Input{Event: &failure.Event{Job: failure.Job{Name: "j", Namespace: ns, Kind: kind}}, Recommendation: rec, Runs: 1}
}

func TestDecide(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	prod := c
	prod.Rules = append([]Rule{{Name: "prod", Namespaces: []string{"prod-*"}, Verdict: Review}}, c.Rules...)
	paused := input(failure.OOMMemory, 0.95, 1.2, failure.Training, "ml")
	paused.Paused = true
	budget := input(failure.OOMMemory, 0.95, 1.2, failure.Training, "ml")
	budget.Runs = 5
	stage := input(failure.OOMMemory, 0.95, 1.2, failure.Training, "ml")
	stage.Runs, stage.Event.Job.Labels = 2, map[string]string{LabelMaxAttempts: "2"}
	final := Default()
	final.Rules = append([]Rule{{Name: "prod", Namespaces: []string{"prod-*"}, Verdict: Review, Final: true}}, c.Rules...)
	off := Default()
	off.Autonomy.Enabled = false
	costly := func() Input { return input(failure.OOMMemory, 0.95, 2.5, failure.Training, "ml") }
	grantedPaused := granted(costly())
	grantedPaused.Paused = true
	grantedBudget := granted(costly())
	grantedBudget.Runs = 5
	otherTemplate := granted(costly())
	otherTemplate.Grant.Template = "ml/other"
	otherCategory := granted(costly())
	otherCategory.Grant.Category = failure.DiskFull
	otherJobKind := granted(costly())
	otherJobKind.Grant.JobKind = failure.Batch
	tests := []struct {
		name   string
		c      Config
		in     Input
		want   Verdict
		reason string
	}{
		{"sure oom applies", c, input(failure.OOMMemory, 0.95, 1.2, failure.Training, "ml"), Auto, "resource-fixes"},
		{"unsure oom is reviewed", c, input(failure.OOMMemory, 0.6, 1.2, failure.Training, "ml"), Review, "no policy rule"},
		{"costly oom is reviewed", c, input(failure.OOMMemory, 0.95, 2.5, failure.Training, "ml"), Review, "no policy rule"},
		{"over the cost cap is denied", c, input(failure.OOMMemory, 0.95, 4.5, failure.Training, "ml"), Deny, "over the cap"},
		{"deployment is reviewed", c, input(failure.OOMMemory, 0.95, 1.2, failure.Deployment, "ml"), Review, "deployments-reviewed"},
		{"user code is denied", c, input(failure.UserCode, 0.95, 0, failure.Training, "ml"), Deny, "not retrying: The job's code raised an error."},
		{"unknown is reviewed", c, input(failure.Unknown, 0.2, 0, failure.Training, "ml"), Review, "not recognised"},
		{"preemption applies", c, input(failure.Preempted, 0.9, 1, failure.Batch, "ml"), Auto, "transient"},
		{"namespace rule first", prod, input(failure.OOMMemory, 0.95, 1.2, failure.Training, "prod-eu"), Review, "prod"},
		{"namespace rule passes others", prod, input(failure.OOMMemory, 0.95, 1.2, failure.Training, "dev"), Auto, "resource-fixes"},
		{"kill switch", c, paused, Review, "paused"},
		{"attempt budget", c, budget, Deny, "5 runs"},
		{"a stage's own retry policy", c, stage, Deny, "the most allowed is 2"},
		// A fix the rules keep for review applies on its own when its kind is
		// granted; denials, budgets, the cost cap, unknown failures, final rules, low
		// confidence and the kill switch still win; another kind's grant changes nothing.
		{"reviewed without a grant", c, costly(), Review, "no policy rule matched"},
		{"granted applies", c, granted(costly()), Auto,
			"autonomy granted to oom_memory on ml/j (training) by alice on 2026-12-06 (the rules alone: no policy rule matched)"},
		{"a deployment's review rule yields", c, granted(input(failure.OOMMemory, 0.95, 1.2, failure.Deployment, "ml")), Auto,
			"the rules alone: policy rule deployments-reviewed"},
		{"already automatic", c, granted(input(failure.OOMMemory, 0.95, 1.2, failure.Training, "ml")), Auto, "policy rule resource-fixes"},
		{"a final rule keeps it", final, granted(input(failure.OOMMemory, 0.95, 1.2, failure.Training, "prod-eu")), Review,
			"policy rule prod (final: autonomy granted"},
		{"low confidence", c, granted(input(failure.OOMMemory, 0.6, 1.2, failure.Training, "ml")), Review,
			"the classification's confidence 0.60 is under 0.70"},
		{"over the cost cap", c, granted(input(failure.OOMMemory, 0.95, 4.5, failure.Training, "ml")), Deny, "over the cap"},
		{"not retryable", c, granted(input(failure.UserCode, 0.95, 0, failure.Training, "ml")), Deny, "not retrying"},
		{"unknown", c, granted(input(failure.Unknown, 0.2, 0, failure.Training, "ml")), Review, "not recognised"},
		{"granted: attempt budget", c, grantedBudget, Deny, "5 runs"},
		{"granted: kill switch", c, grantedPaused, Review, "automatic actions are paused"},
		{"another template's grant", c, otherTemplate, Review, "no policy rule matched"},
		{"another category's grant", c, otherCategory, Review, "no policy rule matched"},
		{"another job kind's grant", c, otherJobKind, Review, "no policy rule matched"},
		{"autonomy off", off, granted(costly()), Review, "no policy rule matched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.Decide(tt.in)
			if got.Verdict != tt.want || !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("Decide() = %+v, want verdict %s with reason containing %q", got, tt.want, tt.reason)
			}
			// The grant is named only where it made the verdict automatic.
			byGrant := got.Verdict == Auto && strings.HasPrefix(got.Reason, "autonomy granted")
			if byGrant != (got.Grant == grantSeq) || !byGrant && got.Grant != 0 {
				t.Errorf("Decide() = %+v: grant %d, want %d only when the grant made it automatic", got, got.Grant, grantSeq)
			}
		})
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"default", func(c *Config) { c.Default = "yes" }, "policy.default"},
		{"attempts", func(c *Config) { c.MaxAttempts = 0 }, "policy.maxAttempts"},
		{"cost", func(c *Config) { c.MaxCostMultiple = 0.5 }, "policy.maxCostMultiple"},
		{"rate", func(c *Config) { c.RatePerMinute = 0 }, "policy.ratePerMinute"},
		{"cost NaN", func(c *Config) { c.MaxCostMultiple = math.NaN() }, "policy.maxCostMultiple"},
		{"rate NaN", func(c *Config) { c.RatePerMinute = math.NaN() }, "policy.ratePerMinute"},
		{"rate infinite", func(c *Config) { c.RatePerMinute = math.Inf(1) }, "policy.ratePerMinute"},
		{"rule confidence NaN", func(c *Config) { c.Rules[2].MinConfidence = math.NaN() }, "policy.rules[2].minConfidence"},
		{"rule cost NaN", func(c *Config) { c.Rules[2].MaxCostMultiple = math.NaN() }, "policy.rules[2].maxCostMultiple"},
		{"verdict", func(c *Config) { c.Rules[1].Verdict = "maybe" }, "policy.rules[1].verdict"},
		{"category", func(c *Config) { c.Rules[0].Categories = []failure.Category{"oom"} }, "policy.rules[0].categories"},
		{"pattern", func(c *Config) { c.Rules[0].Namespaces = []string{"["} }, "policy.rules[0].namespaces"},
		{"confidence", func(c *Config) { c.Rules[2].MinConfidence = 2 }, "policy.rules[2].minConfidence"},
		{"name", func(c *Config) { c.Rules[2].Name = "" }, "policy.rules[2].name"},
		{"window", func(c *Config) { c.Autonomy.Window = time.Minute }, "policy.autonomy.window"},
		{"window too long", func(c *Config) { c.Autonomy.Window = 400 * 24 * time.Hour }, "policy.autonomy.window"},
		{"reviews too many", func(c *Config) { c.Autonomy.MinReviews = 2_000_000 }, "policy.autonomy.minReviews"},
		{"poll too rare", func(c *Config) { c.Autonomy.PollInterval = 2 * time.Hour }, "policy.autonomy.pollInterval"},
		{"reviews", func(c *Config) { c.Autonomy.MinReviews = 0 }, "policy.autonomy.minReviews"},
		{"approval", func(c *Config) { c.Autonomy.MinApprovalRate = 1.5 }, "policy.autonomy.minApprovalRate"},
		{"outcomes", func(c *Config) { c.Autonomy.MinOutcomes = -1 }, "policy.autonomy.minOutcomes"},
		{"success", func(c *Config) { c.Autonomy.MinSuccessRate = -0.1 }, "policy.autonomy.minSuccessRate"},
		{"confidence", func(c *Config) { c.Autonomy.MinConfidence = 2 }, "policy.autonomy.minConfidence"},
		{"revert window", func(c *Config) { c.Autonomy.RevertWindow = 0 }, "policy.autonomy.revertWindow"},
		{"revert below", func(c *Config) { c.Autonomy.RevertBelow = 1.1 }, "policy.autonomy.revertBelow"},
		{"poll", func(c *Config) { c.Autonomy.PollInterval = 0 }, "policy.autonomy.pollInterval"},
		{"check", func(c *Config) { c.Autonomy.CheckInterval = time.Millisecond }, "policy.autonomy.checkInterval"},
		{"final deny", func(c *Config) { c.Rules[1].Final = true }, "policy.rules[1].final"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(60, 2) // one a second, two at once
	now := time.Unix(1000, 0)
	for i := range 2 {
		if ok, _ := l.Allow(now); !ok {
			t.Fatalf("Allow #%d on a full bucket = false", i+1)
		}
	}
	ok, wait := l.Allow(now)
	if ok || wait != time.Second {
		t.Fatalf("Allow on an empty bucket = %v, %v; want false, 1s", ok, wait)
	}
	if ok, _ := l.Allow(now.Add(1500 * time.Millisecond)); !ok {
		t.Fatal("Allow after refill = false")
	}
	if ok, _ := l.Allow(now.Add(1600 * time.Millisecond)); ok {
		t.Fatal("Allow right after using the refill = true")
	}
}
