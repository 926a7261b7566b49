package sim

import (
	"fmt"

	"github.com/autofix/autofix/failure"
)

// Telemetry is what the simulated cluster measures of the runs' usage: which peaks
// (host memory, per-GPU memory, local storage) the failure events and the recorded
// outcomes carry.
type Telemetry string

const (
	// TelemetryAll is a cluster with metrics (Prometheus with cAdvisor and the DCGM
	// exporter): every failure event and every outcome, successful or not, carries the
	// run's peak host memory, per-GPU memory and local storage. It is the default.
	TelemetryAll Telemetry = "all"
	// TelemetryFailures is a cluster without metrics, as the Kubernetes watcher sees
	// it (remediate/): the API has no usage, only how a container ended. An OOMKilled
	// container was killed at its memory limit, so its event carries the limit as its
	// peak memory; an eviction for exceeding the ephemeral-storage limit carries the
	// figure the kubelet's message names, the limit. Nothing else is measured: no GPU
	// memory, nothing for a failure of another reason (a DataLoader worker the OOM
	// killer chose ends in "Error", not OOMKilled), and no usage on any outcome.
	TelemetryFailures Telemetry = "failures"
	// TelemetryNone measures nothing: no usage on events or outcomes. A policy still
	// reads the reason (OOMKilled, Evicted) and the message.
	TelemetryNone Telemetry = "none"
)

// Telemetries lists the telemetry settings, from the most measured to the least.
func Telemetries() []Telemetry { return []Telemetry{TelemetryAll, TelemetryFailures, TelemetryNone} }

// ParseTelemetry reads a telemetry setting by name ("all", "failures" or "none").
func ParseTelemetry(name string) (Telemetry, error) {
	switch t := Telemetry(name); t {
	case TelemetryAll, TelemetryFailures, TelemetryNone:
		return t, nil
	}
	return "", fmt.Errorf("want all, failures or none, got %q", name)
}

// TelemetrySource is the scenario's telemetry: Telemetry, or TelemetryAll when it is
// not set.
func (s *Scenario) TelemetrySource() Telemetry {
	if s.Telemetry == "" {
		return TelemetryAll
	}
	return s.Telemetry
}

// eventUsage sets the usage of a failure event, rendered with every peak, to what the
// telemetry measures. It reads the event's final reason, after its text is chosen.
func (t Telemetry) eventUsage(ev *failure.Event) {
	if t == TelemetryAll || t == "" {
		return
	}
	u := failure.Usage{}
	if t == TelemetryFailures {
		res := ev.Job.Resources
		switch ev.Failure.Reason {
		case "OOMKilled":
			u.PeakMemoryBytes = res.MemoryBytes
		case "Evicted":
			u.PeakEphemeralStorageBytes = res.EphemeralStorageBytes
		}
	}
	ev.Failure.Usage = u
}

// outcomeUsage is the usage an outcome records of a run that used u.
func (t Telemetry) outcomeUsage(u failure.Usage) failure.Usage {
	if t == TelemetryAll || t == "" {
		return u
	}
	return failure.Usage{}
}

// failureEvent is the event of a failed attempt as the policies see it: its text
// (failureText) and the usage the scenario's telemetry measures of it.
func (s *Scenario) failureEvent(ru *run, a int, opt failure.Option, res result, c *Corpus) (failure.Event, textUse) {
	ev, use := s.failureText(ru, a, opt, res, c)
	s.TelemetrySource().eventUsage(&ev)
	return ev, use
}
