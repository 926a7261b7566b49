package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/autofix/autofix/ledger"
)

// Webhook formats.
const (
	// FormatJSON is autofix's own message (Message), signed.
	FormatJSON = "json"
	// FormatSlack is a Slack incoming webhook's {"text": ...}, which Mattermost and
	// Rocket.Chat take too.
	FormatSlack = "slack"
)

// Headers of a webhook post. The signature is HMAC-SHA256, keyed with the webhook's
// secret, of "v1:" + the timestamp header + ":" + the body, in hex after "v1=".
const (
	HeaderDelivery  = "X-Autofix-Delivery"  // the message's id: the same on every attempt
	HeaderEvent     = "X-Autofix-Event"     // the message's type, e.g. review.pending
	HeaderTimestamp = "X-Autofix-Timestamp" // when this attempt was signed, in unix seconds
	HeaderSignature = "X-Autofix-Signature" // v1=<hex>
)

// Message is the body of a FormatJSON webhook post: one thing that happened to one
// review. Receivers tell messages apart by Delivery (an attempt sent again carries the
// same), and order them by Time.
type Message struct {
	// Version is the message's schema version, 1.
	Version int `json:"version"`
	// Type is review.pending, review.escalated or review.ended.
	Type string `json:"type"`
	// Delivery is the message's id.
	Delivery string `json:"delivery"`
	// Time is when it happened: the review began, escalated or ended.
	Time        time.Time     `json:"time"`
	Remediation ReviewSummary `json:"remediation"`
}

// ReviewSummary is what a webhook message says of a remediation: what on-call needs
// to decide where to look, never the failure's log or a credential.
type ReviewSummary struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace,omitempty"`
	Job       string `json:"job,omitempty"`
	Template  string `json:"template,omitempty"`
	Category  string `json:"category,omitempty"`
	Team      string `json:"team,omitempty"`
	// State is the remediation's state when the message was made: pending_review,
	// or where the review ended (approved, rejected, ...).
	State string `json:"state"`
	// Severity is warning, or critical once the review has waited the escalation time.
	Severity     string    `json:"severity"`
	PendingSince time.Time `json:"pendingSince"`
	// EndedAt and DecidedBy are those of an ended review; DecidedBy is empty when
	// no person decided (the fix expired).
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	DecidedBy string     `json:"decidedBy,omitempty"`
	Summary   string     `json:"summary"`
	Proposal  string     `json:"proposal"`
	// Evidence is the line of the failure the classification rests on, clipped,
	// with what looks like a credential redacted.
	Evidence  string `json:"evidence,omitempty"`
	ReviewURL string `json:"reviewURL"`
}

// MessageType is the Type of a message of kind.
func MessageType(kind ledger.DeliveryKind) string { return "review." + string(kind) }

// DeliveryID is the id of webhook's kind message about remediation id: 32 hex
// digits, the same whichever replica makes it.
func DeliveryID(webhook, id string, kind ledger.DeliveryKind) string {
	sum := sha256.Sum256([]byte(webhook + "\x00" + id + "\x00" + string(kind)))
	return hex.EncodeToString(sum[:16])
}

// summarize is what a message says of r at now.
func (o *WebhookOptions) summarize(r *ledger.Remediation, now time.Time) ReviewSummary {
	since := pendingSince(r)
	if r.State != ledger.PendingReview {
		since = r.ReceivedAt
		for _, e := range r.Audit {
			if e.To == ledger.PendingReview {
				since = e.At
			}
		}
	}
	sev, _ := severityAt(o.EscalateAfter, since, now)
	s := ReviewSummary{
		ID: r.EventID, Namespace: labelValue(r.Namespace), Job: labelValue(r.JobName), Template: labelValue(r.Template),
		Category: string(r.Category), State: string(r.State), Severity: sev, PendingSince: since.UTC(),
		Summary: summary(r, sev, o.EscalateAfter), Proposal: description(r, since), Evidence: evidence(r),
		ReviewURL: (&Options{ExternalURL: o.ExternalURL}).ReviewLink(r.EventID),
	}
	if r.Event != nil && o.TeamLabel != "" {
		s.Team = labelValue(r.Event.Job.Labels[o.TeamLabel])
	}
	if r.State != ledger.PendingReview {
		end := r.UpdatedAt
		for _, e := range r.Audit {
			if e.From == ledger.PendingReview {
				end, s.DecidedBy = e.At, labelValue(e.Actor)
				break
			}
		}
		end = end.UTC()
		s.EndedAt = &end
		s.Summary = text(fmt.Sprintf("The review of the fix for job %s ended: %s", jobName(r), r.State), maxSummary)
		if s.DecidedBy != "" && s.DecidedBy != "autofix" {
			s.Summary = text(fmt.Sprintf("The review of the fix for job %s ended: %s by %s", jobName(r), r.State, s.DecidedBy), maxSummary)
		}
	}
	return s
}

func jobName(r *ledger.Remediation) string {
	if r.Namespace != "" {
		return r.Namespace + "/" + r.JobName
	}
	return r.JobName
}

// body is the post's body of webhook's kind message about r, made at now.
func (o *WebhookOptions) body(r *ledger.Remediation, kind ledger.DeliveryKind, now time.Time) ([]byte, error) {
	s := o.summarize(r, now)
	at := s.PendingSince
	switch kind {
	case ledger.DeliveryEscalated:
		at = s.PendingSince.Add(o.EscalateAfter)
	case ledger.DeliveryEnded:
		at = *s.EndedAt
	}
	if o.Format == FormatSlack {
		return json.Marshal(map[string]string{"text": slackText(&s, kind)})
	}
	return json.Marshal(Message{Version: 1, Type: MessageType(kind), Delivery: DeliveryID(o.Name, r.EventID, kind),
		Time: at, Remediation: s})
}

// slackText is a Slack mrkdwn message; what came from the failure is made inert
// (chatText), so that it cannot make a link or a mention.
func slackText(s *ReviewSummary, kind ledger.DeliveryKind) string {
	icon := ":hourglass:"
	switch kind {
	case ledger.DeliveryEscalated:
		icon = ":rotating_light:"
	case ledger.DeliveryEnded:
		icon = ":white_check_mark:"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s *%s*", icon, chatText(s.Summary))
	if kind != ledger.DeliveryEnded {
		fmt.Fprintf(&b, "\n%s", chatText(s.Proposal))
		if s.Evidence != "" {
			fmt.Fprintf(&b, "\n> %s", chatText(s.Evidence))
		}
	}
	fmt.Fprintf(&b, "\n<%s|Open the review>", slackEscape(s.ReviewURL))
	return b.String()
}

// slackEscape escapes the three characters Slack's mrkdwn gives a meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// chatText makes text that came from a failure inert in the chats that take the
// Slack format: Slack's three characters escaped (no <!channel>, no <url|label>);
// and, for Mattermost and Rocket.Chat, which read plain mentions and Markdown too,
// a zero-width space after each "@" (no @channel, @here, @all) and between "]"
// and "(" (no [label](url) link, no ![image](url) fetched by every reader).
func chatText(s string) string {
	return chatReplacer.Replace(s)
}

var chatReplacer = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "@", "@\u200b", "](", "]\u200b(")

// Sign returns the signature header's value of body at timestamp (unix seconds),
// keyed with secret.
func Sign(secret []byte, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "v1:%d:", timestamp)
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a webhook post as a receiver should: the signature of the body and
// the timestamp header, keyed with the shared secret, and a timestamp within
// tolerance of now (an older one is a replay). It compares in constant time.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New(HeaderTimestamp + ": not unix seconds")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%s: %s from now, over the %s tolerated", HeaderTimestamp, d.Round(time.Second), tolerance)
	}
	if !hmac.Equal([]byte(signature), []byte(Sign(secret, ts, body))) {
		return errors.New(HeaderSignature + ": does not match")
	}
	return nil
}
