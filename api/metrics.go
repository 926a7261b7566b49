package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/registry"
)

// Metrics are autofix's Prometheus metrics. Every label has a bounded set of
// values: categories, states, verdicts, outcomes, routes, status codes.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpLatency  *prometheus.HistogramVec

	classified     *prometheus.CounterVec
	recommendLat   prometheus.Histogram
	decisions      *prometheus.CounterVec
	decisionLat    prometheus.Histogram
	reviews        *prometheus.CounterVec
	outcomes       *prometheus.CounterVec
	spent          prometheus.Counter
	originalSpend  prometheus.Counter
	modelInfo      *prometheus.GaugeVec
	remediationsBy *prometheus.GaugeVec
	fixRate        prometheus.Gauge
	drift          *prometheus.GaugeVec
	drifting       prometheus.Gauge
}

// NewMetrics registers the metrics (and the Go runtime's and the process's) in a
// registry of their own.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_http_requests_total",
		Help: "HTTP requests by route, method and status code."}, []string{"route", "method", "code"})
	m.httpLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "autofix_http_request_duration_seconds",
		Help: "HTTP request latency by route.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
		[]string{"route"})
	m.classified = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_classifications_total",
		Help: "Failures classified, by category (events consumed and API recommendations)."}, []string{"category", "source"})
	m.recommendLat = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "autofix_recommendation_duration_seconds",
		Help: "Time to classify and recommend one event.", Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05}})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_decisions_total",
		Help: "Policy decisions on consumed events: auto (applied on its own), review, rejected."}, []string{"verdict"})
	m.decisionLat = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "autofix_decision_latency_seconds",
		Help:    "From an event's Kafka timestamp to its decision being durable in the ledger.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}})
	m.reviews = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_reviews_total",
		Help: "Fixes approved or rejected, and classifications corrected, by a person."}, []string{"action"})
	m.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "autofix_remediation_outcomes_total",
		Help: "How re-submitted jobs ended, by the category of the failure they fixed."}, []string{"category", "outcome"})
	m.spent = prometheus.NewCounter(prometheus.CounterOpts{Name: "autofix_retry_cost_dollars_total",
		Help: "Predicted cost of the successful re-submissions, at the configuration autofix chose."})
	m.originalSpend = prometheus.NewCounter(prometheus.CounterOpts{Name: "autofix_retry_original_cost_dollars_total",
		Help: "What the same successful runs would have cost at the failed configuration (had it been enough)."})
	m.modelInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "autofix_model_info",
		Help: "The retry models in use (value 1): their name, and their version in the model registry (0: not from it)."}, []string{"name", "version"})
	m.remediationsBy = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "autofix_remediations",
		Help: "Remediations in the ledger by state (refreshed every 15 s)."}, []string{"state"})
	m.fixRate = prometheus.NewGauge(prometheus.GaugeOpts{Name: "autofix_fix_rate",
		Help: "Share of the re-submissions that ended and succeeded, over the whole ledger (refreshed every 15 s)."})
	m.drift = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "autofix_model_success_rate",
		Help: "Over the latest ended attempts (up to 500): the mean P(success) the models predicted, and the share that succeeded (refreshed every minute)."},
		[]string{"rate"})
	m.drifting = prometheus.NewGauge(prometheus.GaugeOpts{Name: "autofix_model_drifting",
		Help: "1 when the predicted and observed success rates of the latest ended attempts are too far apart to be chance (at least 50 attempts, 0.10 apart, |z| >= 3), else 0."})
	for _, c := range []prometheus.Collector{m.httpRequests, m.httpLatency, m.classified, m.recommendLat, m.decisions, m.decisionLat,
		m.reviews, m.outcomes, m.spent, m.originalSpend, m.modelInfo, m.remediationsBy, m.fixRate, m.drift, m.drifting} {
		f(c)
	}
	return m
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Register adds a collector (the consumer's counters, from serve).
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

func (m *Metrics) request(method, route string, status int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.httpLatency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) recommended(rec *failure.Recommendation, d time.Duration) {
	m.classified.WithLabelValues(string(rec.Classification.Category), "api").Inc()
	m.recommendLat.Observe(d.Seconds())
}

func (m *Metrics) reviewed(action string) { m.reviews.WithLabelValues(action).Inc() }

// Decided counts a consumed event's decision (engine.Intake.Decided).
func (m *Metrics) Decided(e *ledger.Entry, latency time.Duration) {
	if e.Recommendation != nil {
		m.classified.WithLabelValues(string(e.Recommendation.Classification.Category), "kafka").Inc()
	}
	verdict := "rejected"
	switch e.State {
	case ledger.Approved:
		verdict = "auto"
	case ledger.PendingReview:
		verdict = "review"
	}
	m.decisions.WithLabelValues(verdict).Inc()
	m.decisionLat.Observe(latency.Seconds())
}

// Finished counts how a re-submission ended; for a success, what it cost at the
// chosen configuration and what the failed one would have.
func (m *Metrics) Finished(category failure.Category, succeeded bool, chosen *failure.Option) {
	outcome := "failed"
	if succeeded {
		outcome = "succeeded"
	}
	m.outcomes.WithLabelValues(string(category), outcome).Inc()
	if succeeded && chosen != nil && chosen.RunCost > 0 && chosen.CostMultiple > 0 {
		m.spent.Add(chosen.RunCost)
		m.originalSpend.Add(chosen.RunCost / chosen.CostMultiple)
	}
}

// ModelInUse records the models' name and their version in the model registry (0:
// not from it).
func (m *Metrics) ModelInUse(name string, version int) {
	m.modelInfo.Reset()
	m.modelInfo.WithLabelValues(name, strconv.Itoa(version)).Set(1)
}

// Drift sets the predicted and observed success rates of the latest ended attempts,
// and whether the models drift. Nothing ended: the rates are not set.
func (m *Metrics) Drift(d registry.Drift) {
	if d.Attempts > 0 {
		m.drift.WithLabelValues("predicted").Set(d.Predicted)
		m.drift.WithLabelValues("observed").Set(d.Observed)
	}
	drifting := 0.0
	if d.Drifting {
		drifting = 1
	}
	m.drifting.Set(drifting)
}

// Remediations sets the per-state gauge (from the ledger's counts).
func (m *Metrics) Remediations(counts map[ledger.State]int) {
	for st, n := range counts {
		m.remediationsBy.WithLabelValues(string(st)).Set(float64(n))
	}
	if ended := counts[ledger.Succeeded] + counts[ledger.Failed]; ended > 0 {
		m.fixRate.Set(float64(counts[ledger.Succeeded]) / float64(ended))
	}
}
