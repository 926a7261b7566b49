package api

import (
	"context"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/review"
)

// What the server calls, each as small as its routes need. *ledger.Store,
// *review.Service, *recommender.Recommender, *classifier.Classifier and
// *auth.Authenticator are the real ones.

// Ledger is what the API and the review page read of the ledger, and what they
// write to it themselves: the kill switch and corrections.
type Ledger interface {
	Get(ctx context.Context, id string) (ledger.Remediation, error)
	List(ctx context.Context, f ledger.Filter) ([]ledger.Remediation, error)
	History(ctx context.Context, templates []string, limit int) (map[string][]failure.Outcome, error)
	Approvers(ctx context.Context, ids []string) (map[string]string, error)
	// AttemptOutcomes is, per remediation, how its own attempt ended as the watcher
	// measured it (its cost among it): the history page's savings.
	AttemptOutcomes(ctx context.Context, ids []string) (map[string]failure.Outcome, error)
	PauseState(ctx context.Context) (ledger.Pause, error)
	SetPaused(ctx context.Context, paused bool, actor, reason string, at time.Time) error
	// Correct records a person's correction of a remediation's classification. Its
	// *ledger.CorrectionError is a 400 naming the field.
	Correct(ctx context.Context, id string, category failure.Category, retryable bool, actor, note string, at time.Time) error
	// RecentPredictedOutcomes is the latest ended attempts with the P(success) they
	// were chosen with: the models page's drift.
	RecentPredictedOutcomes(ctx context.Context, limit int) ([]ledger.PredictedOutcome, error)
}

// Reviewer decides the remediations kept for review, for the JSON API and the
// review page alike: review.Service. Its review.FieldError is a 400 naming the
// field, its review.ConflictError a 409.
type Reviewer interface {
	Approve(ctx context.Context, id, who string, c review.Choice) (ledger.Attempt, error)
	Reject(ctx context.Context, id, who, reason string) error
}

// Recommender advises on a failure, given its template's history; it records
// nothing.
type Recommender interface {
	Recommend(ev *failure.Event, history []failure.Outcome) failure.Recommendation
}

// Rules are the classifier in use: its rules, knowledge tables and model.
type Rules interface {
	RuleSet() *classifier.RuleSet
	// WithRules is a classifier of other rules with the same options (the minimum
	// confidence): POST /v1/rules:test tries candidates as the service would.
	WithRules(rs *classifier.RuleSet) *classifier.Classifier
	// WithKnowledge is a classifier of other knowledge tables with the same rules,
	// model and options: POST /v1/rules:diff tries candidate tables.
	WithKnowledge(k *classifier.Knowledge) *classifier.Classifier
	// ClassifyContext and Model are what POST /v1/rules:diff replays the ledger's
	// events through, as the service classifies them.
	ClassifyContext(ctx context.Context, ev *failure.Event) (failure.Classification, []classifier.RuleError, error)
	Model() *classifier.Model
}

// Authenticator checks bearer tokens, and the tokens of review-page sessions on
// every request.
type Authenticator interface {
	AuthenticateContext(ctx context.Context, secret string) (auth.Principal, bool)
	RecheckContext(ctx context.Context, id auth.TokenID) (auth.Principal, bool)
}
