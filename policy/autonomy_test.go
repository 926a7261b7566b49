package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/failure"
)

// granted is input with a grant of its own kind.
func granted(in Input) Input {
	in.Grant = &Grant{Category: in.Recommendation.Classification.Category, Template: in.Event.HistoryKey(), Actor: "alice",
		At: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
	return in
}

// TestDecideWithAGrant: a fix the rules keep for review applies on its own when its
// kind is granted; denials, budgets, the cost cap, unknown failures, final rules,
// low confidence and the kill switch all still win, and a grant of another kind
// changes nothing.
func TestDecideWithAGrant(t *testing.T) {
	c := Default()
	final := Default()
	final.Rules = append([]Rule{{Name: "prod", Namespaces: []string{"prod-*"}, Verdict: Review, Final: true}}, c.Rules...)
	off := Default()
	off.Autonomy.Enabled = false
	costly := func() Input { return input(failure.OOMMemory, 0.95, 2.5, failure.Training, "ml") }
	paused := granted(costly())
	paused.Paused = true
	budget := granted(costly())
	budget.Runs = 5
	otherTemplate := granted(costly())
	otherTemplate.Grant.Template = "ml/other"
	otherCategory := granted(costly())
	otherCategory.Grant.Category = failure.DiskFull
	tests := []struct {
		name   string
		c      Config
		in     Input
		want   Verdict
		reason string
	}{
		{"reviewed without a grant", c, costly(), Review, "no policy rule matched"},
		{"granted applies", c, granted(costly()), Auto,
			"autonomy granted to oom_memory on ml/j by alice on 2026-12-06 (the rules alone: no policy rule matched)"},
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
		{"attempt budget", c, budget, Deny, "5 runs"},
		{"kill switch", c, paused, Review, "automatic actions are paused"},
		{"another template's grant", c, otherTemplate, Review, "no policy rule matched"},
		{"another category's grant", c, otherCategory, Review, "no policy rule matched"},
		{"autonomy off", off, granted(costly()), Review, "no policy rule matched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.Decide(tt.in)
			if got.Verdict != tt.want || !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("Decide() = %+v, want verdict %s with reason containing %q", got, tt.want, tt.reason)
			}
		})
	}
}

func TestValidateAutonomyNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"window", func(c *Config) { c.Autonomy.Window = time.Minute }, "policy.autonomy.window"},
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
