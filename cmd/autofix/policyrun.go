package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
	"github.com/autofix/autofix/sim"
)

// comparedPolicies are the policies simulate --compare and bench policies run, in
// the order of their tables.
var comparedPolicies = []string{"none", "same", "double", "vpa", "autofix", "oracle"}

// parseList parses a comma-separated list of flag's values with parse, each at most
// once; the error names the flag.
func parseList[T comparable](flag, list string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, name := range strings.Split(list, ",") {
		v, err := parse(strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		if slices.Contains(out, v) {
			return nil, fmt.Errorf("%s: %v twice", flag, v)
		}
		out = append(out, v)
	}
	return out, nil
}

// parsePolicy checks a policy's name.
func parsePolicy(name string) (string, error) {
	if !slices.Contains(comparedPolicies, name) {
		return "", fmt.Errorf("unknown policy %q (want %s)", name, strings.Join(comparedPolicies, ", "))
	}
	return name, nil
}

// seedsFrom is n seeds from first up.
func seedsFrom(first uint64, n int) []uint64 {
	seeds := make([]uint64, max(n, 1))
	for i := range seeds {
		seeds[i] = first + uint64(i)
	}
	return seeds
}

// policyRunner simulates policies on scenarios, with the classifier labelling the
// history every policy sees (as the ledger's is) and autofix's models loaded once.
type policyRunner struct {
	modelsPath string
	c          *classifier.Classifier
	m          *models.Models
}

func newPolicyRunner(modelsPath string) (*policyRunner, error) {
	c, err := loadClassifier("", config.Default().Classifier.MinConfidence)
	if err != nil {
		return nil, err
	}
	return &policyRunner{modelsPath: modelsPath, c: c}, nil
}

// policy makes the named policy for scenario s.
func (pr *policyRunner) policy(name string, s *sim.Scenario) (sim.Policy, error) {
	if name != "autofix" {
		return sim.Baseline(name)
	}
	if pr.m == nil {
		m, err := loadModels(pr.modelsPath)
		if err != nil {
			return nil, fmt.Errorf("--models: %w", err)
		}
		pr.m = m
	}
	return autofixPolicy{recommenderFor(s, pr.c, pr.m, nil)}, nil
}

// run simulates each policy on s with each seed, policies outer, and returns the
// results in that order; jobs > 0 overrides the scenario's number of runs.
func (pr *policyRunner) run(s *sim.Scenario, policies []string, seeds []uint64, jobs int) ([]sim.Result, error) {
	classify := func(ev *failure.Event) failure.Category { return pr.c.Classify(ev).Category }
	var results []sim.Result
	for _, name := range policies {
		p, err := pr.policy(name, s)
		if err != nil {
			return nil, err
		}
		for _, seed := range seeds {
			c := *s
			c.Seed = seed
			r, err := sim.Run(&c, p, sim.Options{Jobs: jobs, Classify: classify})
			if err != nil {
				return nil, err
			}
			results = append(results, r)
		}
	}
	return results, nil
}
