package sim

import (
	"fmt"
	"math"
)

// OnCall prices a person's time on a remediable failure that a policy leaves
// unfixed: noticing it, reading its log, choosing a size and re-running the job by
// hand.
type OnCall struct {
	// Minutes is the time a person spends on each such failure.
	Minutes float64 `json:"minutes"`
	// RatePerHour is what an hour of that person's time costs, in dollars.
	RatePerHour float64 `json:"ratePerHour"`
}

// DefaultOnCall is half an hour of an engineer's time at $100 an hour
// (docs/benchmark.md, "Cost per fixed failure", gives the reasons).
var DefaultOnCall = OnCall{Minutes: 30, RatePerHour: 100}

// Bounds of OnCall's fields: a week of someone's time, and a rate no one is paid.
const (
	maxOnCallMinutes = 7 * 24 * 60
	maxOnCallRate    = 10000
)

// PerFailure is the dollars of a person's time each unfixed remediable failure costs.
func (o OnCall) PerFailure() float64 { return o.Minutes / 60 * o.RatePerHour }

// Validate checks that both figures are finite, not negative and within reason; the
// error names the field (minutes, ratePerHour).
func (o OnCall) Validate() error {
	if math.IsNaN(o.Minutes) || o.Minutes < 0 || o.Minutes > maxOnCallMinutes {
		return fmt.Errorf("minutes: want 0 to %d, got %v", maxOnCallMinutes, o.Minutes)
	}
	if math.IsNaN(o.RatePerHour) || o.RatePerHour < 0 || o.RatePerHour > maxOnCallRate {
		return fmt.Errorf("ratePerHour: want 0 to %d dollars, got %v", maxOnCallRate, o.RatePerHour)
	}
	return nil
}

// Priced is what getting every remediable failure of a Result fixed costs: what the
// policy spent on retries (wasted and false retries included), and for each
// remediable failure it left unfixed, a person's re-run of the job at the right size
// (what the oracle spends on it: its configuration, meeting the same luck) and the
// person's time. Every
// remediable failure ends fixed, by the policy or by hand, so a policy that fixes
// less pays for what it leaves instead of looking cheap. Failures no retry can fix
// need a person whatever the policy does and are priced for none.
type Priced struct {
	OnCall OnCall `json:"onCall"`
	// Unfixed counts the remediable failures the policy left unfixed.
	Unfixed int `json:"unfixed"`
	// RerunCost is the dollars of their manual re-runs (Result.RerunCost);
	// OnCallCost of the person's time on them.
	RerunCost  float64 `json:"rerunCost"`
	OnCallCost float64 `json:"onCallCost"`
	// TotalCost is Result.Cost + RerunCost + OnCallCost, in dollars.
	TotalCost float64 `json:"totalCost"`
	// CostPerFix is TotalCost over the remediable failures (all of them end fixed),
	// in dollars; 0 when there are none.
	CostPerFix float64 `json:"costPerFix"`
	// OracleTotalCost is the same total for the oracle on the same failures.
	OracleTotalCost float64 `json:"oracleTotalCost"`
	// VsOracle is TotalCost / OracleTotalCost (equally CostPerFix over the oracle's);
	// 0 when the oracle's total is 0.
	VsOracle float64 `json:"vsOracle"`
}

// Price prices r with a person's time at o.
func (r Result) Price(o OnCall) Priced {
	p := Priced{OnCall: o, Unfixed: r.Remediable - r.Fixed, RerunCost: r.RerunCost}
	p.OnCallCost = float64(p.Unfixed) * o.PerFailure()
	p.TotalCost = r.Cost + p.RerunCost + p.OnCallCost
	p.OracleTotalCost = r.OracleCost + r.OracleRerunCost + float64(r.OracleUnfixed)*o.PerFailure()
	if r.Remediable > 0 {
		p.CostPerFix = p.TotalCost / float64(r.Remediable)
	}
	if p.OracleTotalCost > 0 {
		p.VsOracle = p.TotalCost / p.OracleTotalCost
	}
	return p
}
