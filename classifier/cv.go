package classifier

import (
	"cmp"
	"fmt"

	"github.com/autofix/autofix/failure"
)

// CrossValidate measures what a model trained like opts adds to base's rules: each of
// opts.Folds folds of items (grouped by source thread) is classified by base with a
// model trained on the other folds, and the held-out results are scored together.
// The rules themselves are not refitted: where they were written while reading items,
// their share of the figure is optimistic, and only a held-out round says how they
// generalise.
func CrossValidate(base *Classifier, items []Labelled, opts TrainOptions) (Report, error) {
	if err := opts.defaults(); err != nil {
		return Report{}, fmt.Errorf("cross-validate: %w", err)
	}
	exs := make([]example, len(items))
	for i, it := range items {
		exs[i].group = cmp.Or(it.Source, fmt.Sprint(i))
	}
	folds := assignFolds(exs, opts.Folds)
	var results []Report
	for k := range opts.Folds {
		var train, test []Labelled
		for i, f := range folds {
			if f == k {
				test = append(test, items[i])
			} else {
				train = append(train, items[i])
			}
		}
		m, _, err := Train(base, train, opts)
		if err != nil {
			return Report{}, fmt.Errorf("cross-validate: fold %d: %w", k, err)
		}
		results = append(results, Evaluate(base.WithModel(m), test))
	}
	return mergeReports(results), nil
}

// mergeReports adds reports of disjoint sets of events.
func mergeReports(rs []Report) Report {
	var out Report
	stats := map[string]*CategoryStats{}
	for _, r := range rs {
		out.Total += r.Total
		out.CategoryCorrect += r.CategoryCorrect
		out.RetryCorrect += r.RetryCorrect
		out.FalseRetries += r.FalseRetries
		out.MissedRetries += r.MissedRetries
		out.NotRetryable += r.NotRetryable
		out.Unknown += r.Unknown
		out.Mistakes = append(out.Mistakes, r.Mistakes...)
		for _, s := range r.PerCategory {
			t, ok := stats[string(s.Category)]
			if !ok {
				t = &CategoryStats{Category: s.Category}
				stats[string(s.Category)] = t
			}
			t.Support += s.Support
			t.Predicted += s.Predicted
			t.Correct += s.Correct
		}
	}
	for _, cat := range failure.Categories() {
		if s, ok := stats[string(cat)]; ok {
			out.PerCategory = append(out.PerCategory, *s)
		}
	}
	return out
}
