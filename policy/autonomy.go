package policy

import (
	"fmt"
	"time"

	"github.com/autofix/autofix/failure"
)

// Autonomy configures graduated autonomy: which kinds of fix (a failure category on
// one job template) are proposed to apply without review, from how people reviewed
// them and how they worked, and when a granted kind goes back to review. A grant is
// always an admin's decision; package autonomy applies these thresholds.
type Autonomy struct {
	// Enabled turns the whole of it on: proposals, grants honoured, automatic
	// revocation. Off, every fix goes where the rules send it, and the grants stay
	// recorded for when it is on again.
	Enabled bool `yaml:"enabled"`
	// Window is how far back the figures go (by when failures were received).
	Window time.Duration `yaml:"window"`
	// MinReviews is the fewest fixes of the kind people must have decided, and
	// MinApprovalRate the least share of them approved.
	MinReviews      int     `yaml:"minReviews"`
	MinApprovalRate float64 `yaml:"minApprovalRate"`
	// MinOutcomes is the fewest of its attempts that must have ended (succeeded or
	// failed, approved by a person or not), and MinSuccessRate the least share of
	// them that succeeded.
	MinOutcomes    int     `yaml:"minOutcomes"`
	MinSuccessRate float64 `yaml:"minSuccessRate"`
	// MinConfidence is the least classification confidence at which a grant applies
	// a fix: below it the category may be wrong, and the kind's record says nothing.
	MinConfidence float64 `yaml:"minConfidence"`
	// RevertWindow is how many of a granted kind's latest automatic fixes (since
	// its grant) are watched, and RevertBelow the success rate under which the
	// grant is revoked: as soon as so many of them failed that the rate is below
	// it even if the rest of the window succeeds.
	RevertWindow int     `yaml:"revertWindow"`
	RevertBelow  float64 `yaml:"revertBelow"`
	// PollInterval is how often a replica reads the grants in force; CheckInterval
	// how often the leader checks the granted kinds' latest outcomes.
	PollInterval  time.Duration `yaml:"pollInterval"`
	CheckInterval time.Duration `yaml:"checkInterval"`
}

// DefaultAutonomy returns the thresholds autofix runs with when none are configured.
func DefaultAutonomy() Autonomy {
	return Autonomy{Enabled: true, Window: 30 * 24 * time.Hour, MinReviews: 10, MinApprovalRate: 0.9, MinOutcomes: 10,
		MinSuccessRate: 0.8, MinConfidence: 0.7, RevertWindow: 10, RevertBelow: 0.6,
		PollInterval: 30 * time.Second, CheckInterval: time.Minute}
}

// Limits of the thresholds that are counts and durations: beyond them a setting is
// a mistake (a window longer than the ledger keeps anything, a poll that never
// comes).
const (
	maxAutonomyWindow   = 366 * 24 * time.Hour
	maxAutonomyCount    = 1_000_000
	maxAutonomyInterval = time.Hour
)

// Validate reports the first problem, naming the field under policy.autonomy. Rates
// are checked so that NaN (YAML's .nan) fails: every comparison with it is false,
// and a NaN threshold would pass any record and never revoke.
func (a *Autonomy) Validate() error {
	const f = "policy.autonomy."
	switch {
	case a.Window < time.Hour || a.Window > maxAutonomyWindow:
		return fmt.Errorf("%swindow: %v, want 1h to %v", f, a.Window, maxAutonomyWindow)
	case a.MinReviews < 1 || a.MinReviews > maxAutonomyCount:
		return fmt.Errorf("%sminReviews: %d, want 1 to %d (a grant rests on people's reviews)", f, a.MinReviews, maxAutonomyCount)
	case a.MinOutcomes < 1 || a.MinOutcomes > maxAutonomyCount:
		return fmt.Errorf("%sminOutcomes: %d, want 1 to %d", f, a.MinOutcomes, maxAutonomyCount)
	case a.RevertWindow < 1 || a.RevertWindow > 1000:
		return fmt.Errorf("%srevertWindow: %d, want 1 to 1000", f, a.RevertWindow)
	case a.PollInterval < time.Second || a.PollInterval > maxAutonomyInterval:
		return fmt.Errorf("%spollInterval: %v, want 1s to %v", f, a.PollInterval, maxAutonomyInterval)
	case a.CheckInterval < time.Second || a.CheckInterval > maxAutonomyInterval:
		return fmt.Errorf("%scheckInterval: %v, want 1s to %v", f, a.CheckInterval, maxAutonomyInterval)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"minApprovalRate", a.MinApprovalRate}, {"minSuccessRate", a.MinSuccessRate}, {"minConfidence", a.MinConfidence},
		{"revertBelow", a.RevertBelow}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s%s: %g, want a number within [0, 1]", f, r.name, r.v)
		}
	}
	return nil
}

// Grant is an admin's grant of autonomy to a kind of fix, as the decision sees it.
type Grant struct {
	// Seq identifies the grant in the ledger (ledger.AutonomyChange.Seq); the
	// decisions it makes carry it (Decision.Grant).
	Seq      int64
	Category failure.Category
	// Template is the template's history key, "namespace/template".
	Template string
	// JobKind is the kind of job it was granted for: it applies to that kind
	// only, whatever shares the template key.
	JobKind failure.JobKind
	// Workload is the workload's API kind it was granted for ("" for batch Jobs):
	// the caller looks grants up by it (ledger.Kind).
	Workload string
	// Actor granted it at At.
	Actor string
	At    time.Time
}

// grantApplies turns a review verdict into auto for a granted kind: d is the rules'
// decision, final whether the rule that made it keeps its verdict whatever the grants.
func (c *Config) grantApplies(in *Input, d Decision, final bool) Decision {
	g := in.Grant
	cl := &in.Recommendation.Classification
	if g == nil || d.Verdict != Review || !c.Autonomy.Enabled || g.Category != cl.Category || g.Template != in.Event.HistoryKey() ||
		!g.JobKind.Valid() || g.JobKind != in.Event.Job.Kind {
		return d
	}
	kind := string(g.JobKind)
	if g.Workload != "" {
		kind += ", " + g.Workload
	}
	granted := fmt.Sprintf("autonomy granted to %s on %s (%s) by %s on %s", g.Category, g.Template, kind, g.Actor,
		g.At.UTC().Format(time.DateOnly))
	switch conf := cl.Confidence; {
	case final:
		return Decision{Verdict: Review, Reason: d.Reason + " (final: " + granted + " does not apply)"}
	case !(conf >= c.Autonomy.MinConfidence): // NaN on either side is not sure enough
		return Decision{Verdict: Review, Reason: fmt.Sprintf("%s; %s, but the classification's confidence %.2f is under %.2f", d.Reason, granted,
			conf, c.Autonomy.MinConfidence)}
	}
	return Decision{Verdict: Auto, Reason: granted + " (the rules alone: " + d.Reason + ")", Grant: g.Seq}
}
