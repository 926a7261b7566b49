package classifier

import (
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
	folds := assignFolds(items, opts.Folds)
	got := make([]failure.Classification, len(items))
	for k := range opts.Folds {
		var train []Labelled
		for i, f := range folds {
			if f != k {
				train = append(train, items[i])
			}
		}
		m, _, err := Train(base, train, opts)
		if err != nil {
			return Report{}, fmt.Errorf("cross-validate: fold %d: %w", k, err)
		}
		c := base.WithModel(m)
		for i, f := range folds {
			if f == k {
				got[i] = c.Classify(&items[i].Event)
			}
		}
	}
	return report(items, got), nil
}
