package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/autofix/autofix/failure"
)

// Graduated autonomy: the grants that let a kind of fix apply without review, and
// their revocations (migration 0012). The ledger records them and the figures they
// were decided on; which kinds deserve a grant, and when one is revoked, is the
// autonomy package's.

// Kind is a kind of fix, the unit of graduated autonomy: a failure category on one
// job template — the unit a template's history already uses — for one kind of
// workload: a batch Job and a Deployment may share a template key (a Deployment's
// template is its name), and so may a Job and a JobSet; the record of one says
// nothing of the other.
type Kind struct {
	Category failure.Category `json:"category"`
	// Template is the template's history key, "namespace/template"
	// (failure.TemplateKey, failure.Event.HistoryKey).
	Template string `json:"template"`
	// JobKind is the workload's kind (failure.Job.Kind); empty for failures of
	// jobs that carry none, which are never granted.
	JobKind failure.JobKind `json:"jobKind,omitempty"`
	// Workload is the workload's API kind as kubernetes.kinds names it (JobSet,
	// RayJob, Workflow); "" for a batch Job ("Job" is taken for it).
	Workload string `json:"workload,omitempty"`
}

func (k Kind) String() string {
	if k.Workload != "" {
		return string(k.Category) + " on " + k.Template + " (" + string(k.JobKind) + ", " + k.Workload + ")"
	}
	return string(k.Category) + " on " + k.Template + " (" + string(k.JobKind) + ")"
}

// WorkloadJob is the workload of a batch Job, which a Kind and an Entry name "".
const WorkloadJob = "Job"

// workloadRE is an API kind's name.
var workloadRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,62}$`)

// normWorkload is w as the ledger keeps it: "" for a batch Job.
func normWorkload(w string) string {
	if w == WorkloadJob {
		return ""
	}
	return w
}

// AutonomyError is the error of a change of autonomy that can never be recorded,
// naming the field at fault.
type AutonomyError struct {
	Field, Problem string
}

func (e *AutonomyError) Error() string { return e.Field + ": " + e.Problem }

// Limits of a template key's parts: a namespace is a DNS label; a template a label
// value or a Job's name (a DNS subdomain).
var (
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	templateRE  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?$`)
)

// CheckKind refuses a kind that cannot be granted: a category outside the taxonomy,
// unknown (a person always decides what autofix does not recognise) or one no retry
// fixes; a template that is not "namespace/template" with a Kubernetes namespace
// and a template named as Kubernetes names objects and labels; a job kind that is
// not one of failure's (the fixes of jobs that carry none are never granted).
func CheckKind(k Kind) error {
	switch {
	case k.Workload != "" && !workloadRE.MatchString(k.Workload):
		return &AutonomyError{"workload", fmt.Sprintf("%.64q, want an API kind: Job, JobSet, RayJob or Workflow", k.Workload)}
	case k.Category == "":
		return &AutonomyError{"category", "required"}
	case !k.Category.Valid():
		return &AutonomyError{"category", fmt.Sprintf("%.64q is not a category of the taxonomy", string(k.Category))}
	case k.Category == failure.Unknown || !k.Category.DefaultRetryable():
		return &AutonomyError{"category", fmt.Sprintf("%s: no retry fixes it, so it cannot apply on its own", k.Category)}
	case k.Template == "":
		return &AutonomyError{"template", "required: namespace/template"}
	}
	ns, name, ok := strings.Cut(k.Template, "/")
	switch {
	case !ok:
		return &AutonomyError{"template", fmt.Sprintf("%.300q: want namespace/template", k.Template)}
	case !namespaceRE.MatchString(ns):
		return &AutonomyError{"template", fmt.Sprintf("%.300q: the namespace is not a Kubernetes namespace's name", k.Template)}
	case !templateRE.MatchString(name):
		return &AutonomyError{"template", fmt.Sprintf("%.300q: want a template of letters, digits, '-', '_' and '.'", k.Template)}
	case k.JobKind == "":
		return &AutonomyError{"jobKind", "required: training, compression, deployment or batch"}
	case !k.JobKind.Valid():
		return &AutonomyError{"jobKind", fmt.Sprintf("%.64q, want training, compression, deployment or batch", string(k.JobKind))}
	}
	return nil
}

// AutonomyAction is what a change of autonomy did.
type AutonomyAction string

// The changes' actions.
const (
	// AutonomyGrant lets the kind's fixes that the policy's rules would keep for
	// review apply on their own.
	AutonomyGrant AutonomyAction = "grant"
	// AutonomyRevoke sends them to review again.
	AutonomyRevoke AutonomyAction = "revoke"
)

// MaxAutonomyReason is the longest reason a change of autonomy may carry, in bytes.
const MaxAutonomyReason = 1000

// AutonomyChange is one grant or revocation.
type AutonomyChange struct {
	// Seq numbers the changes from 1.
	Seq    int64
	Kind   Kind
	Action AutonomyAction
	// Forced marks a grant made past thresholds the kind did not meet (it needs a
	// reason).
	Forced bool
	// Grant is, for a revocation, the Seq of the grant it ends. Given to
	// ChangeAutonomy, the revocation is refused (ErrConflict) unless that grant is
	// still the one in force; 0 ends whichever is.
	Grant int64
	// Actor is who changed it, At when, Reason why (required to revoke and to force).
	Actor, Reason string
	At            time.Time
	// Evidence are the figures it was decided on (optional).
	Evidence *AutonomyEvidence
}

// AutonomyEvidence are the figures a change of autonomy was decided on.
type AutonomyEvidence struct {
	// Since and Until: the kind's remediations received in [Since, Until) were
	// counted.
	Since time.Time  `json:"since"`
	Until time.Time  `json:"until"`
	Stats *KindStats `json:"stats,omitempty"`
	// Failed says which thresholds the kind did not meet, one sentence each.
	Failed []string `json:"failed,omitempty"`
	// Recent are how the latest fixes applied on their own since the grant ended:
	// what an automatic revocation was decided on.
	Recent *AttemptCounts `json:"recent,omitempty"`
}

// checkChange refuses a change that can never be recorded.
func checkChange(c *AutonomyChange) error {
	c.Kind.Workload = normWorkload(c.Kind.Workload)
	if err := CheckKind(c.Kind); err != nil {
		return err
	}
	switch {
	case c.Action != AutonomyGrant && c.Action != AutonomyRevoke:
		return &AutonomyError{"action", fmt.Sprintf("%.64q, want grant or revoke", string(c.Action))}
	case c.Forced && c.Action != AutonomyGrant:
		return &AutonomyError{"force", "only a grant is forced"}
	case strings.TrimSpace(c.Actor) == "":
		return &AutonomyError{"actor", "required"}
	case len(c.Actor) > maxActor || !utf8.ValidString(c.Actor) || hasControl(c.Actor, false):
		return &AutonomyError{"actor", fmt.Sprintf("want at most %d bytes of text without control characters", maxActor)}
	case len(c.Reason) > MaxAutonomyReason:
		return &AutonomyError{"reason", fmt.Sprintf("%d bytes is over the %d-byte limit", len(c.Reason), MaxAutonomyReason)}
	case !utf8.ValidString(c.Reason) || hasControl(c.Reason, true):
		return &AutonomyError{"reason", "want valid UTF-8 text without control characters"}
	case c.Action == AutonomyRevoke && strings.TrimSpace(c.Reason) == "":
		return &AutonomyError{"reason", "required to revoke: say why"}
	case c.Forced && strings.TrimSpace(c.Reason) == "":
		return &AutonomyError{"reason", "required to grant past the thresholds: say why"}
	case c.Grant < 0:
		return &AutonomyError{"grant", fmt.Sprintf("%d, want a grant's seq or 0", c.Grant)}
	}
	return nil
}

// ChangeAutonomy records c, at c.At (now when zero), with an audit row (event id
// "", action "autonomy-grant" or "autonomy-revoke"), and returns it as recorded. A
// change that can never be recorded is an *AutonomyError naming the field; granting
// a kind already granted, revoking one that is not, or revoking a grant other than
// c.Grant (someone changed the kind meanwhile) is ErrConflict.
func (s *Store) ChangeAutonomy(ctx context.Context, c AutonomyChange) (AutonomyChange, error) {
	if err := checkChange(&c); err != nil {
		return AutonomyChange{}, err
	}
	c.At = atOrNow(c.At).UTC()
	evidence := ""
	if c.Evidence != nil {
		b, err := json.Marshal(c.Evidence)
		if err != nil {
			return AutonomyChange{}, fmt.Errorf("change autonomy: %w", err)
		}
		evidence = string(b)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.backend == backendPostgres {
			// The lock addAudit takes for rows of no event: it orders the changes too,
			// so that two cannot both see a kind ungranted.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(auditLock)); err != nil {
				return fmt.Errorf("change autonomy: %w", err)
			}
		}
		var (
			cur    int64
			action string
			actor  string
		)
		err := tx.QueryRowContext(ctx, s.q(`SELECT seq, action, actor FROM autonomy WHERE category = ? AND template_key = ? AND job_kind = ?
			AND workload = ? ORDER BY seq DESC LIMIT 1`), string(c.Kind.Category), c.Kind.Template, string(c.Kind.JobKind), c.Kind.Workload).Scan(&cur, &action, &actor)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("change autonomy: %w", err)
		}
		granted := err == nil && AutonomyAction(action) == AutonomyGrant
		switch {
		case c.Action == AutonomyGrant && granted:
			return fmt.Errorf("%s is already granted (by %s): %w", c.Kind, actor, ErrConflict)
		case c.Action == AutonomyRevoke && !granted:
			return fmt.Errorf("%s is not granted: %w", c.Kind, ErrConflict)
		case c.Action == AutonomyRevoke && c.Grant != 0 && c.Grant != cur:
			return fmt.Errorf("%s: grant %d is no longer in force (%d is): %w", c.Kind, c.Grant, cur, ErrConflict)
		case c.Action == AutonomyRevoke:
			c.Grant = cur
		default:
			c.Grant = 0
		}
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM autonomy").Scan(&c.Seq); err != nil {
			return fmt.Errorf("change autonomy: %w", err)
		}
		forced := 0
		if c.Forced {
			forced = 1
		}
		_, err = tx.ExecContext(ctx, s.q("INSERT INTO autonomy ("+autonomyCols+") VALUES "+placeholders(1, 12)),
			c.Seq, string(c.Kind.Category), c.Kind.Template, string(c.Kind.JobKind), c.Kind.Workload, string(c.Action), forced, c.Grant, c.Actor,
			c.Reason, evidence, nanos(c.At))
		if err != nil {
			return fmt.Errorf("change autonomy: %w", err)
		}
		return s.addAudit(ctx, tx, "", c.At, c.Actor, "autonomy-"+string(c.Action), "", "", autonomyDetail(&c))
	})
	if err != nil {
		return AutonomyChange{}, err
	}
	return c, nil
}

// autonomyDetail is the audit trail's line of a change.
func autonomyDetail(c *AutonomyChange) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", c.Action, c.Kind)
	if c.Forced {
		b.WriteString(" (forced past the thresholds)")
	}
	if e := c.Evidence; e != nil {
		if st := e.Stats; st != nil {
			fmt.Fprintf(&b, "; reviewed %d (%d approved), outcomes %d (%d succeeded)", st.Reviews(), st.Approved,
				st.Outcomes().Total(), st.Outcomes().Succeeded)
		}
		if r := e.Recent; r != nil {
			fmt.Fprintf(&b, "; latest automatic fixes: %d of %d succeeded", r.Succeeded, r.Total())
		}
		if len(e.Failed) > 0 {
			b.WriteString("; not met: " + strings.Join(e.Failed, "; "))
		}
	}
	if c.Reason != "" {
		b.WriteString("; reason: " + c.Reason)
	}
	return b.String()
}

const autonomyCols = "seq, category, template_key, job_kind, workload, action, forced, grant_seq, actor, reason, evidence, created_at"

// MaxGrants is the most grants AutonomyGrants returns (the oldest first): far more
// kinds than people review.
const MaxGrants = 10000

// AutonomyGrants returns the grants in force — each kind whose latest change is a
// grant — oldest first, at most MaxGrants. Replicas poll it.
func (s *Store) AutonomyGrants(ctx context.Context) ([]AutonomyChange, error) {
	out, err := s.autonomyRows(ctx, "SELECT "+autonomyCols+` FROM autonomy a WHERE action = 'grant'
		AND seq = (SELECT MAX(seq) FROM autonomy b WHERE b.category = a.category AND b.template_key = a.template_key
			AND b.job_kind = a.job_kind AND b.workload = a.workload)
		ORDER BY seq LIMIT ?`, MaxGrants)
	if err != nil {
		return nil, fmt.Errorf("autonomy grants: %w", err)
	}
	return out, nil
}

// AutonomyChanges returns the latest limit changes (at most 1000), newest first.
func (s *Store) AutonomyChanges(ctx context.Context, limit int) ([]AutonomyChange, error) {
	out, err := s.autonomyRows(ctx, "SELECT "+autonomyCols+" FROM autonomy ORDER BY seq DESC LIMIT ?", min(max(limit, 1), 1000))
	if err != nil {
		return nil, fmt.Errorf("autonomy changes: %w", err)
	}
	return out, nil
}

func (s *Store) autonomyRows(ctx context.Context, query string, limit int) ([]AutonomyChange, error) {
	var out []AutonomyChange
	err := queryEach(ctx, s.r, s.q(query), []any{limit}, func(r *sql.Rows) error {
		var (
			c                               AutonomyChange
			category, job, action, evidence string
			forced                          int
			at                              int64
		)
		if err := r.Scan(&c.Seq, &category, &c.Kind.Template, &job, &c.Kind.Workload, &action, &forced, &c.Grant, &c.Actor, &c.Reason, &evidence,
			&at); err != nil {
			return err
		}
		c.Kind.Category, c.Kind.JobKind, c.Action = failure.Category(category), failure.JobKind(job), AutonomyAction(action)
		c.Forced, c.At = forced == 1, fromNanos(at)
		if evidence != "" {
			// Figures that do not decode (written by a later version, say) are left
			// out: the change stands without them, and one bad row must not hide
			// every grant from the replicas.
			c.Evidence = new(AutonomyEvidence)
			if json.Unmarshal([]byte(evidence), c.Evidence) != nil {
				c.Evidence = nil
			}
		}
		out = append(out, c)
		return nil
	})
	return out, err
}
