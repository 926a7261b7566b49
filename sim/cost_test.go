package sim

import (
	"math"
	"strings"
	"testing"
)

func TestPrice(t *testing.T) {
	halfHour := OnCall{Minutes: 30, RatePerHour: 100} // $50 a failure
	for _, tt := range []struct {
		name string
		r    Result
		o    OnCall
		want Priced
	}{{
		// 4 remediable, 3 fixed for $30 of retries; the fourth is re-run by hand for
		// the oracle's $6 and costs $50 of someone's time: 30 + 6 + 50 = 86, 21.5 a
		// failure; the oracle fixed all four for $20.
		name: "one left unfixed",
		r:    Result{Remediable: 4, Fixed: 3, Cost: 30, WastedCost: 10, OracleCost: 20, RerunCost: 6},
		o:    halfHour,
		want: Priced{OnCall: halfHour, Unfixed: 1, RerunCost: 6, OnCallCost: 50, TotalCost: 86, CostPerFix: 21.5,
			OracleTotalCost: 20, VsOracle: 4.3},
	}, {
		// Doing nothing without counting anyone's time costs exactly the oracle's
		// spend: the re-runs are the oracle's runs.
		name: "none, no on-call time",
		r:    Result{Remediable: 5, OracleCost: 40, RerunCost: 40},
		o:    OnCall{},
		want: Priced{Unfixed: 5, RerunCost: 40, TotalCost: 40, CostPerFix: 8, OracleTotalCost: 40, VsOracle: 1},
	}, {
		// The oracle's own unfixed failure (bad luck outlasting the budget) is priced
		// the same way: 20 + 5 + 50 = 75. 2 hours at $60 = $120 a failure.
		name: "the oracle left one",
		r:    Result{Remediable: 2, Fixed: 2, Cost: 45, OracleCost: 20, OracleUnfixed: 1, OracleRerunCost: 5},
		o:    halfHour,
		want: Priced{OnCall: halfHour, TotalCost: 45, CostPerFix: 22.5, OracleTotalCost: 75, VsOracle: 0.6},
	}, {
		name: "two hours at $60",
		r:    Result{Remediable: 10, Fixed: 7, Cost: 100, OracleCost: 80, RerunCost: 24},
		o:    OnCall{Minutes: 120, RatePerHour: 60},
		want: Priced{OnCall: OnCall{Minutes: 120, RatePerHour: 60}, Unfixed: 3, RerunCost: 24, OnCallCost: 360,
			TotalCost: 484, CostPerFix: 48.4, OracleTotalCost: 80, VsOracle: 6.05},
	}, {
		// Nothing remediable: nothing to divide by.
		name: "no remediable failures",
		r:    Result{Cost: 12, FalseRetries: 3},
		o:    halfHour,
		want: Priced{OnCall: halfHour, TotalCost: 12},
	}} {
		got := tt.r.Price(tt.o)
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
		if got.OnCall != tt.want.OnCall || got.Unfixed != tt.want.Unfixed || !near(got.RerunCost, tt.want.RerunCost) ||
			!near(got.OnCallCost, tt.want.OnCallCost) || !near(got.TotalCost, tt.want.TotalCost) ||
			!near(got.CostPerFix, tt.want.CostPerFix) || !near(got.OracleTotalCost, tt.want.OracleTotalCost) ||
			!near(got.VsOracle, tt.want.VsOracle) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestOnCallValidate(t *testing.T) {
	if err := DefaultOnCall.Validate(); err != nil {
		t.Errorf("DefaultOnCall: %v", err)
	}
	if got := DefaultOnCall.PerFailure(); got != 50 {
		t.Errorf("DefaultOnCall.PerFailure() = %v, want 50", got)
	}
	for _, tt := range []struct {
		o    OnCall
		want string
	}{
		{OnCall{Minutes: -1, RatePerHour: 100}, "minutes: want 0 to 10080, got -1"},
		{OnCall{Minutes: math.NaN(), RatePerHour: 100}, "minutes: want 0 to 10080, got NaN"},
		{OnCall{Minutes: math.Inf(1), RatePerHour: 100}, "minutes: want 0 to 10080, got +Inf"},
		{OnCall{Minutes: 30, RatePerHour: -5}, "ratePerHour: want 0 to 10000 dollars, got -5"},
		{OnCall{Minutes: 30, RatePerHour: 1e9}, "ratePerHour: want 0 to 10000 dollars, got 1e+09"},
	} {
		if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.o, err, tt.want)
		}
	}
}

// TestRerunsArePricedAsTheOraclesRuns checks the harness's accounting on a real run:
// a policy that fixes nothing leaves every remediable failure to be re-run at the
// oracle's price, and one that fixes some leaves the rest.
func TestRerunsArePricedAsTheOraclesRuns(t *testing.T) {
	s := defaultScenario(t)
	results := map[string]Result{}
	for _, name := range []string{"none", "double", "oracle"} {
		p, err := Baseline(name)
		if err != nil {
			t.Fatal(err)
		}
		if results[name], err = Run(s, p, Options{Jobs: 3000}); err != nil {
			t.Fatal(err)
		}
	}
	none, double, orc := results["none"], results["double"], results["oracle"]
	if orc.OracleUnfixed != orc.Remediable-orc.Fixed || none.OracleUnfixed != orc.OracleUnfixed {
		t.Errorf("oracle left %d of %d unfixed; results say %d (oracle), %d (none)",
			orc.Remediable-orc.Fixed, orc.Remediable, orc.OracleUnfixed, none.OracleUnfixed)
	}
	if math.Abs(none.RerunCost-none.OracleCost) > 1e-6 || none.OracleCost == 0 {
		t.Errorf("none: re-runs cost %v, want the oracle's %v", none.RerunCost, none.OracleCost)
	}
	if math.Abs(orc.RerunCost-orc.OracleRerunCost) > 1e-6 {
		t.Errorf("oracle: re-runs cost %v, want its own unfixed failures' %v", orc.RerunCost, orc.OracleRerunCost)
	}
	if double.Fixed == 0 || double.Fixed == double.Remediable || !(double.RerunCost > 0 && double.RerunCost < none.RerunCost) {
		t.Errorf("double fixed %d of %d, re-runs %v; want some left, re-run for less than none's %v",
			double.Fixed, double.Remediable, double.RerunCost, none.RerunCost)
	}
	sum := 0.0
	for _, c := range double.ByCause {
		sum += c.RerunCost
	}
	if math.Abs(sum-double.RerunCost) > 1e-6 {
		t.Errorf("double: re-runs by cause sum to %v, want %v", sum, double.RerunCost)
	}
	if p := none.Price(OnCall{}); math.Abs(p.VsOracle-1) > 1e-9 {
		t.Errorf("none with no on-call time: %vx the oracle, want 1x", p.VsOracle)
	}
}

// TestPriceDoesNotRewardFixingLess is issue 14's example: at seed 11 of the default
// scenario Argo-style doubling spends 0.29x what the oracle spends on retries because
// it fixes 64% of the failures; priced with the rest re-run by hand it costs more
// than the oracle even if a person's time were free.
func TestPriceDoesNotRewardFixingLess(t *testing.T) {
	s := defaultScenario(t)
	s.Seed = 11
	p, err := Baseline("double")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(s, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.FixRate > 0.7 || r.CostVsOracle > 0.35 {
		t.Fatalf("double at seed 11: fix rate %.3f, spend %.2fx the oracle; want issue 14's 0.64 and 0.29x", r.FixRate, r.CostVsOracle)
	}
	for _, o := range []OnCall{{}, DefaultOnCall} {
		if got := r.Price(o).VsOracle; got <= 1 {
			t.Errorf("on-call %+v: double costs %.2fx the oracle per fixed failure, want more than 1x", o, got)
		}
	}
}
