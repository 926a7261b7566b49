// Package models predicts what a retry will do. Given a failed run, its
// classification and the history of its recurring job, the retry-success models give
// the chance that a candidate configuration succeeds (memory, GPU memory and deadline
// models, logistic regressions fitted with gonum, combined with the rate of failures no
// configuration prevents), and the runtime model gives how long it runs and so what it
// costs.
//
// Where no run's peak usage was measured (a cluster without metrics), the limits the
// template's runs were given and whether each was enough bound its need: a run that
// succeeded at a limit needed no more, one that ran out needed more. Bounds holds
// the posterior of a lognormal need with a trend given those intervals, and its
// chance that a candidate limit is enough stands in for the memory, local-storage and
// (for a GPU out-of-memory) GPU models: a posterior does not depend on the policy that
// chose the limits, where a mapping learned from training histories would.
//
// Models are trained from examples of retries and their outcomes (Train), evaluated on
// jobs held out from training (AUC, Brier score, reliability tables, runtime error),
// and saved as versioned JSON artifacts; the default models, trained on the default
// simulated workload, are embedded in the binary.
//
// It does no I/O and knows nothing of the simulator: the examples it learns from are
// what a cluster records. It does not choose configurations: the optimizer does.
package models
