package notify

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/autofix/autofix/ledger"
)

// Alert is one alert as Alertmanager's API v2 takes it (a postableAlert). Its
// labels are its identity: the same labels, from any replica, are the same alert.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// StartsAt is when it began; EndsAt when it ends: in the future while it fires
	// (it expires then unless sent again), now or earlier to resolve it.
	StartsAt     time.Time `json:"startsAt"`
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL,omitempty"`
}

// AlertName is the alertname label of every alert autofix sends.
const AlertName = "AutofixFixAwaitsReview"

// Severities, the value of the severity label: a review is a warning, and critical
// once it has waited Options.EscalateAfter.
const (
	Warning  = "warning"
	Critical = "critical"
)

// Labels autofix sets on every alert; Options.Labels may not name them.
const (
	LabelAlertName   = "alertname"
	LabelSeverity    = "severity"
	LabelRemediation = "remediation" // the remediation's (event's) id: what makes each alert one
	LabelNamespace   = "namespace"
	LabelJob         = "job_name" // as kube-state-metrics names a Job
	LabelTemplate    = "template"
	LabelCategory    = "category"
	LabelTeam        = "team" // from the Job's label Options.TeamLabel; absent without it
)

// ReservedLabels are the label names autofix sets itself.
func ReservedLabels() []string {
	return []string{LabelAlertName, LabelSeverity, LabelRemediation, LabelNamespace, LabelJob, LabelTemplate,
		LabelCategory, LabelTeam}
}

// Bounds on what goes out, in bytes: label values come from failure events, which
// anyone able to publish to Kafka writes, and a receiver shows annotations to people.
const (
	maxLabelValue = 253 // a Kubernetes label value is at most 63; a namespaced name at most 253
	maxEvidence   = 300 // one line of a log, clipped
	maxSummary    = 400
)

// severity returns the severity of a review waiting since since, at now, and since
// when it has had it.
func (o *Options) severity(since, now time.Time) (string, time.Time) {
	return severityAt(o.EscalateAfter, since, now)
}

// severityAt is the severity, at now, of a review waiting since since that escalates
// after escalateAfter (never when 0), and since when it has had it.
func severityAt(escalateAfter time.Duration, since, now time.Time) (string, time.Time) {
	if escalateAfter > 0 && !now.Before(since.Add(escalateAfter)) {
		return Critical, since.Add(escalateAfter)
	}
	return Warning, since
}

// pendingSince is when r entered pending_review: its state's last change.
func pendingSince(r *ledger.Remediation) time.Time {
	if !r.UpdatedAt.IsZero() {
		return r.UpdatedAt
	}
	return r.ReceivedAt
}

// firing is the alert of remediation r (pending_review) at now: firing until
// ResendInterval times resendMargin from now, unless sent again.
func (o *Options) firing(r *ledger.Remediation, now time.Time) Alert {
	since := pendingSince(r)
	sev, start := o.severity(since, now)
	if start.After(now) { // another replica's clock ahead of this one's
		start = now
	}
	labels := make(map[string]string, len(o.Labels)+8)
	for k, v := range o.Labels {
		labels[k] = v
	}
	set := func(name, value string) {
		if v := labelValue(value); v != "" { // an empty label is no label to Alertmanager
			labels[name] = v
		}
	}
	set(LabelAlertName, AlertName)
	set(LabelSeverity, sev)
	// The id as it is, for it is the alert's identity: two ids that cleaned to one
	// value would be one alert. Event ids are checked at decoding (no control
	// character, at most 256 bytes).
	labels[LabelRemediation] = strings.ToValidUTF8(r.EventID, "\uFFFD")
	set(LabelNamespace, r.Namespace)
	set(LabelJob, r.JobName)
	set(LabelTemplate, r.Template)
	set(LabelCategory, string(r.Category))
	if r.Event != nil && o.TeamLabel != "" {
		set(LabelTeam, r.Event.Job.Labels[o.TeamLabel])
	}
	link := o.ReviewLink(r.EventID)
	ann := map[string]string{
		"summary":     summary(r, sev, o.EscalateAfter),
		"description": description(r, since),
		"review_url":  link,
	}
	if ev := evidence(r); ev != "" {
		ann["evidence"] = ev
	}
	return Alert{Labels: labels, Annotations: ann, StartsAt: start.UTC(),
		EndsAt: now.Add(resendMargin * o.ResendInterval).UTC(), GeneratorURL: link}
}

// resendMargin is how many resend intervals a firing alert lasts: it is sent again
// every interval, so two rounds may fail (or the leader change hands) before it
// expires; and an alert that nobody resolves (the process that sent it is gone)
// ends on its own this long after it was last sent.
const resendMargin = 3

// ReviewLink is the address of remediation id on the review page: after a login,
// if the browser has no session, the page opens it. Opening it changes nothing.
func (o *Options) ReviewLink(id string) string {
	return strings.TrimRight(o.ExternalURL, "/") + "/ui/remediations/" + url.PathEscape(id)
}

func summary(r *ledger.Remediation, sev string, after time.Duration) string {
	job := r.JobName
	if r.Namespace != "" {
		job = r.Namespace + "/" + r.JobName
	}
	s := fmt.Sprintf("A fix for job %s (%s) awaits review", job, r.Category)
	if sev == Critical {
		s = fmt.Sprintf("A fix for job %s (%s) has awaited review for over %s", job, r.Category, after)
	}
	return text(s, maxSummary)
}

func description(r *ledger.Remediation, since time.Time) string {
	proposal := "autofix proposes a fix"
	if r.Recommendation != nil {
		if o, ok := r.Recommendation.ChosenOption(); ok {
			proposal = "autofix proposes a retry"
			if len(o.Changes) > 0 {
				proposal += ": " + strings.Join(o.Changes, "; ")
			}
			proposal += fmt.Sprintf(" (P(success) %.2f, %.1fx the failed run's cost)", o.PSuccess, o.CostMultiple)
		}
	}
	return text(fmt.Sprintf("%s. Waiting for review since %s. Open the review link to approve or reject it.",
		proposal, since.UTC().Format(time.RFC3339)), maxSummary)
}

// learnedNote begins the evidence line the learned model adds about itself: not a
// line of the failure.
const learnedNote = "the learned model says"

// evidence is the first line of the failure that the classification rests on,
// clipped, with what looks like a credential redacted; never more of the log.
func evidence(r *ledger.Remediation) string {
	if r.Recommendation == nil {
		return ""
	}
	for _, ev := range r.Recommendation.Classification.Evidence {
		if !strings.HasPrefix(ev, learnedNote) {
			return text(scrub(ev), maxEvidence)
		}
	}
	return ""
}

// labelValue makes an untrusted string a label value: cleaned (no line breaks,
// no bidirectional overrides, valid UTF-8) and clipped to maxLabelValue bytes.
func labelValue(s string) string { return strings.TrimSpace(clip(clean(s), maxLabelValue)) }

// text makes an untrusted string an annotation: cleaned as labelValue, clipped
// to max bytes with an ellipsis.
func text(s string, max int) string {
	s = clean(s)
	if len(s) <= max {
		return s
	}
	return strings.TrimSpace(clip(s, max-len("…"))) + "…"
}

// clean returns s as valid UTF-8 without format characters (zero-width,
// bidirectional), each run of control and space characters made one space, and no
// space at either end.
func clean(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case unicode.Is(unicode.Cf, r): // zero-width and bidirectional marks: nothing to see
			continue
		case unicode.IsControl(r) || unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// clip cuts s to at most max bytes, at a character's boundary.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}
