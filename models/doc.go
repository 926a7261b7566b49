// Package models predicts what a retry will do. Given a failed run, its
// classification and the history of its recurring job, the retry-success models give
// the chance that a candidate configuration succeeds (memory, GPU memory and deadline
// models, logistic regressions fitted with gonum, combined with the rate of failures no
// configuration prevents), and the runtime model gives how long it runs and so what it
// costs.
//
// Models are trained from examples of retries and their outcomes (Train), evaluated on
// jobs held out from training (AUC, Brier score, reliability tables, runtime error),
// and saved as versioned JSON artifacts; the default models, trained on the default
// simulated workload, are embedded in the binary.
//
// It does no I/O and knows nothing of the simulator: the examples it learns from are
// what a cluster records. It does not choose configurations: the optimizer does.
package models
