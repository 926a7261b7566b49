package api

import (
	"time"

	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// The API's representations: a stable contract, apart from the ledger's Go types.

// RemediationSummary is one remediation in a list.
type RemediationSummary struct {
	ID         string           `json:"id"`
	State      ledger.State     `json:"state"`
	Category   failure.Category `json:"category,omitempty"`
	Confidence float64          `json:"confidence"`
	Namespace  string           `json:"namespace,omitempty"`
	Job        string           `json:"job,omitempty"`
	Kind       string           `json:"kind,omitempty"`
	Template   string           `json:"template,omitempty"`
	Chain      string           `json:"chain,omitempty"`
	// Attempt is the failed run's attempt number (1: the original run).
	Attempt int `json:"attempt"`
	// Reason is the last decision's reason; Error why a message was rejected.
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	ReceivedAt time.Time `json:"receivedAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	// Chosen is the option the recommendation chose; Retry the attempt approved for
	// this failure (its job, resources and outcome), once there is one.
	Chosen *failure.Option `json:"chosen,omitempty"`
	Retry  *AttemptView    `json:"retry,omitempty"`
}

// AttemptView is one re-submission of a job chain.
type AttemptView struct {
	Number      int               `json:"number"`
	Job         string            `json:"job"`
	Remediation string            `json:"remediation"`
	Resources   failure.Resources `json:"resources"`
	Params      map[string]string `json:"params,omitempty"`
	SubmittedAt *time.Time        `json:"submittedAt,omitempty"`
	Outcome     string            `json:"outcome,omitempty"`
	FinishedAt  *time.Time        `json:"finishedAt,omitempty"`
}

// AuditView is one line of a remediation's audit trail.
type AuditView struct {
	At     time.Time    `json:"at"`
	Actor  string       `json:"actor"`
	Action string       `json:"action"`
	From   ledger.State `json:"from,omitempty"`
	To     ledger.State `json:"to,omitempty"`
	Detail string       `json:"detail,omitempty"`
}

// RemediationView is one remediation with its whole chain.
type RemediationView struct {
	RemediationSummary
	Event          *failure.Event          `json:"event,omitempty"`
	Recommendation *failure.Recommendation `json:"recommendation,omitempty"`
	// Attempts are every re-submission of the chain so far, by number.
	Attempts []AttemptView `json:"attempts"`
	Audit    []AuditView   `json:"audit"`
	Source   SourceView    `json:"source"`
	// Correction is a person's correction of the classification in force (the
	// latest), when there is one.
	Correction *CorrectionView `json:"correction,omitempty"`
}

// SourceView is where the event came from on Kafka.
type SourceView struct {
	Topic     string `json:"topic,omitempty"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

func summary(r *ledger.Remediation) RemediationSummary {
	s := RemediationSummary{ID: r.EventID, State: r.State, Category: r.Category, Confidence: r.Confidence,
		Namespace: r.Namespace, Job: r.JobName, Kind: r.Kind, Template: r.Template, Chain: r.ChainID, Attempt: r.Attempt,
		Reason: r.Reason, Error: r.Error, ReceivedAt: r.ReceivedAt, UpdatedAt: r.UpdatedAt}
	if r.Recommendation != nil {
		if o, ok := r.Recommendation.ChosenOption(); ok {
			s.Chosen = &o
		}
	}
	if a, ok := engine.OwnAttempt(r); ok {
		v := attemptView(a)
		s.Retry = &v
	}
	return s
}

func view(r *ledger.Remediation) RemediationView {
	v := RemediationView{RemediationSummary: summary(r), Event: r.Event, Recommendation: r.Recommendation,
		Attempts: []AttemptView{}, Audit: []AuditView{},
		Source:     SourceView{Topic: r.Source.Topic, Partition: r.Source.Partition, Offset: r.Source.Offset},
		Correction: correctionView(r.Correction)}
	for _, a := range r.Attempts {
		v.Attempts = append(v.Attempts, attemptView(a))
	}
	for _, a := range r.Audit {
		v.Audit = append(v.Audit, AuditView{At: a.At, Actor: a.Actor, Action: a.Action, From: a.From, To: a.To, Detail: a.Detail})
	}
	return v
}

func attemptView(a ledger.Attempt) AttemptView {
	v := AttemptView{Number: a.Number, Job: a.JobName, Remediation: a.EventID, Resources: a.Resources, Params: a.Params, Outcome: a.Outcome}
	if !a.SubmittedAt.IsZero() {
		t := a.SubmittedAt
		v.SubmittedAt = &t
	}
	if !a.FinishedAt.IsZero() {
		t := a.FinishedAt
		v.FinishedAt = &t
	}
	return v
}
