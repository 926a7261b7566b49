package classifier

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/autofix/autofix/failure"
)

// calibrationItems are labelled failures: "slow" ones the rule t calls timeouts, of
// which half were configuration errors; "typo" ones the rule c always gets right;
// "flaky" ones that only three failures show.
func calibrationItems() []Labelled {
	var items []Labelled
	add := func(n int, log string, l Label) {
		for i := range n {
			ev := event("", 1, "", fmt.Sprintf("%s in step %d", log, i))
			items = append(items, Labelled{Event: *ev, Expected: l, Source: fmt.Sprintf("https://example.org/%s/%d", log, i)})
		}
	}
	add(10, "slow", Label{failure.Timeout, true})
	add(10, "slow", Label{failure.ConfigError, false})
	add(10, "typo", Label{failure.UserCode, false})
	add(3, "flaky", Label{failure.ConfigError, false})
	return items
}

func calibrationRules(t *testing.T, slowExpr string) *RuleSet {
	return mustLoad(t, map[string]string{"a.yaml": "rules:\n" +
		rule("t", slowExpr, "timeout", 10, 0.9) + rule("c", `has("typo")`, "user_code", 10, 0.9) +
		rule("f", `has("flaky")`, "network_transient", 10, 0.9)})
}

func TestCalibrateRulesMeasuresOnlyRulesWrongMoreOftenThanTheySay(t *testing.T) {
	rs := calibrationRules(t, `has("slow")`)
	got := calibrateRules(New(rs, Options{}), calibrationItems())
	// t: right on 10 of 20, smoothed toward 0.9 with 4 failures' weight.
	want := []RuleCalibration{{Rule: "t", Digest: ruleDigest(rs.Rules()[0]), Decided: 20, Right: 10, Confidence: 0.567}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("calibrateRules = %+v, want %+v (c is always right; f decided only 3)", got, want)
	}
}

func TestClassifierHoldsARuleToItsMeasuredRate(t *testing.T) {
	rs := calibrationRules(t, `has("slow")`)
	m, rep, err := Train(New(rs, Options{}), calibrationItems(), TrainOptions{Folds: 2, MaxIterations: 50, MinDocFreq: 1, CalibrateRules: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.RuleCalibration) != 1 || len(m.RuleCalibration()) != 1 {
		t.Fatalf("report %+v, model %+v: want t measured", rep.RuleCalibration, m.RuleCalibration())
	}
	slow := event("", 1, "", "slow in step 99")
	without := New(rs, Options{Model: m.withoutCalibration()}).Classify(slow)
	with := New(rs, Options{Model: m}).Classify(slow)
	if !strings.HasPrefix(evidenceWith(with.Evidence, "rule t was right"), "rule t was right on 10 of the 20 labelled failures it decided: confidence 0.57, not 0.90") {
		t.Errorf("evidence %q does not say t was held to its rate", with.Evidence)
	}
	if evidenceWith(without.Evidence, "rule t was right") != "" {
		t.Errorf("without calibration the evidence says %q", without.Evidence)
	}
	if !without.Retryable || without.Category != failure.Timeout || without.Confidence != 0.9 {
		t.Errorf("without calibration = %s/%v %.2f, want the rule's timeout at 0.90", without.Category, without.Retryable, without.Confidence)
	}
	if with.Confidence >= 0.9 {
		t.Errorf("with calibration confidence %.2f: want below the rule's 0.90", with.Confidence)
	}
	// A rule changed since it was measured is not held to the measure.
	changed := calibrationRules(t, `has("slow") or has("sluggish")`)
	if got := New(changed, Options{Model: m}).Classify(slow); got.Confidence != 0.9 || evidenceWith(got.Evidence, "rule t was right") != "" {
		t.Errorf("changed rule: %s %.2f %q; want its own confidence", got.Category, got.Confidence, got.Evidence)
	}
	// The measure travels with the artifact.
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Model
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if got := New(rs, Options{Model: &back}).Classify(slow); got.Confidence != with.Confidence {
		t.Errorf("after a round trip confidence %.2f, want %.2f", got.Confidence, with.Confidence)
	}
}

func TestModelArtifactRefusesBadCalibrations(t *testing.T) {
	rs := calibrationRules(t, `has("slow")`)
	m, _, err := Train(New(rs, Options{}), calibrationItems(), TrainOptions{Folds: 2, MaxIterations: 20, MinDocFreq: 1, CalibrateRules: true})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	good := m.ruleCalibration[0]
	for want, rcs := range map[string][]RuleCalibration{
		"right 21 of 20":         {{Rule: "t", Digest: good.Digest, Decided: 20, Right: 21, Confidence: 0.5}},
		"confidence 1.2":         {{Rule: "t", Digest: good.Digest, Decided: 20, Right: 10, Confidence: 1.2}},
		`rule "t": empty or rep`: {good, good},
		`rule "": empty`:         {{Digest: good.Digest, Decided: 20, Right: 10, Confidence: 0.5}},
	} {
		var j map[string]any
		if err := json.Unmarshal(data, &j); err != nil {
			t.Fatal(err)
		}
		j["ruleCalibration"] = rcs
		bad, _ := json.Marshal(j)
		var got Model
		if err := json.Unmarshal(bad, &got); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ruleCalibration %+v: error %v, want %q", rcs, err, want)
		}
	}
}

func evidenceWith(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// withoutCalibration is m with no rule held to a measured rate.
func (m *Model) withoutCalibration() *Model {
	c := *m
	c.ruleCalibration = nil
	return &c
}
