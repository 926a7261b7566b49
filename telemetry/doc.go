// Package telemetry reads what a run used from Prometheus: the peak memory working
// set of a Job's main container, the peak GPU memory on any one of its GPUs and the
// peak local storage it wrote, each over the run, through client_golang's API client
// (instant queries of max_over_time). It builds its queries itself, from label
// values it escapes (namespace, pod and container names are untrusted input), checks
// every value it reads (finite, not negative, within a bound), and bounds how long a
// lookup may wait: each has a timeout, and after repeated failures lookups are
// short-circuited for a while, so that a Prometheus that is down delays no event for
// longer than one timeout.
//
// It does not know Kubernetes: the caller (remediate's watcher, through the service)
// says which pods ran, when, and with how much GPU memory; and it does not decide
// what a peak means (the models do). A series it finds no sample of leaves its peak
// at 0, which failure.Usage reads as unknown.
package telemetry
