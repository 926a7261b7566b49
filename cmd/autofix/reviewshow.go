package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/autofix/autofix/api/client"
)

// logLines is how many of the log tail's last lines show prints; -o json has it all.
const logLines = 10

// showWriter writes one remediation as `autofix review show` does: labelled fields,
// then indented sections, as kubectl describe does. Every string from the server is
// sanitized.
type showWriter struct {
	w   io.Writer
	now time.Time
	err error
}

func (s *showWriter) printf(format string, args ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, args...)
	}
}

// field writes "Label:  value" with the value on one line.
func (s *showWriter) field(indent int, label, value string) {
	s.printf("%s%-*s %s\n", strings.Repeat(" ", indent), 16-indent, label+":", orDash(sanitizeLine(value)))
}

// block writes text's lines (the last max of them when max > 0), indented.
func (s *showWriter) block(indent int, text string, max int) {
	lines := strings.Split(strings.TrimRight(sanitizeText(text), "\n"), "\n")
	if max > 0 && len(lines) > max {
		s.printf("%s(the last %d of %d lines)\n", strings.Repeat(" ", indent), max, len(lines))
		lines = lines[len(lines)-max:]
	}
	for _, l := range lines {
		s.printf("%s%s\n", strings.Repeat(" ", indent), l)
	}
}

// table writes rows (sanitized cells, the first the header) aligned, indented.
func (s *showWriter) table(indent int, rows [][]string) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for i, r := range rows {
		cells := make([]string, len(r))
		for j, c := range r {
			if i == 0 {
				cells[j] = c
			} else {
				cells[j] = cell(c)
			}
		}
		fmt.Fprintf(tw, "%s%s\n", strings.Repeat(" ", indent), strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
	s.printf("%s", b.String())
}

func writeShow(w io.Writer, v *client.RemediationView, now time.Time) error {
	s := &showWriter{w: w, now: now}
	s.field(0, "Remediation", idWord(v.Id))
	s.field(0, "State", string(v.State))
	s.field(0, "Reason", deref(v.Reason))
	if v.Error != nil {
		s.field(0, "Error", *v.Error)
	}
	job := deref(v.Job)
	if ns := deref(v.Namespace); ns != "" {
		job = ns + "/" + job
	}
	details := []string{fmt.Sprintf("attempt %d", v.Attempt)}
	if v.Kind != nil && *v.Kind != "" {
		details = append(details, string(*v.Kind))
	}
	if v.Template != nil {
		details = append(details, "template "+*v.Template)
	}
	s.field(0, "Job", fmt.Sprintf("%s (%s)", job, strings.Join(details, ", ")))
	s.field(0, "Chain", deref(v.Chain))
	s.field(0, "Received", stamp(now, v.ReceivedAt))
	s.field(0, "Updated", stamp(now, v.UpdatedAt))
	if v.Source.Topic != nil {
		s.field(0, "Source", fmt.Sprintf("Kafka %s, partition %d, offset %d", *v.Source.Topic, v.Source.Partition, v.Source.Offset))
	}
	if v.Event != nil {
		s.failure(&v.Event.Failure)
	}
	if v.Recommendation != nil {
		s.classification(&v.Recommendation.Classification)
	}
	if c := v.Correction; c != nil {
		retry := "a retry cannot fix it"
		if c.Retryable {
			retry = "a retry can fix it"
		}
		s.printf("Correction:\n")
		s.field(2, "Category", fmt.Sprintf("%s (%s)", c.Category, retry))
		s.field(2, "By", fmt.Sprintf("%s at %s", c.By, stamp(now, c.At)))
		if c.Note != nil {
			s.field(2, "Note", *c.Note)
		}
	}
	if v.Recommendation != nil {
		s.recommendation(v.Recommendation)
	}
	if len(v.Attempts) > 0 {
		s.printf("Attempts:\n")
		rows := [][]string{{"NUMBER", "JOB", "SUBMITTED", "OUTCOME", "RESOURCES", "REMEDIATION"}}
		for _, a := range v.Attempts {
			submitted := "-"
			if a.SubmittedAt != nil {
				submitted = stamp(now, *a.SubmittedAt)
			}
			rows = append(rows, []string{fmt.Sprint(a.Number), a.Job, submitted, string(deref(a.Outcome)), resourcesText(a.Resources), a.Remediation})
		}
		s.table(2, rows)
	}
	s.printf("Audit:\n")
	rows := [][]string{{"AT", "ACTOR", "ACTION", "STATE", "DETAIL"}}
	for _, a := range v.Audit {
		state := ""
		if a.From != nil || a.To != nil {
			state = fmt.Sprintf("%s -> %s", orDash(string(deref(a.From))), orDash(string(deref(a.To))))
		}
		rows = append(rows, []string{a.At.UTC().Format(time.RFC3339), a.Actor, a.Action, state, deref(a.Detail)})
	}
	s.table(2, rows)
	if v.State == client.StatePendingReview {
		id := idWord(v.Id)
		s.printf("\nTo decide: autofix review approve %s [--option N] [--reason TEXT]\n"+
			"           autofix review reject %s --reason TEXT\n", id, id)
	}
	return s.err
}

func (s *showWriter) failure(f *client.FailureSignals) {
	s.printf("Failure:\n")
	var parts []string
	if f.Reason != nil {
		parts = append(parts, *f.Reason)
	}
	if f.ExitCode != nil {
		parts = append(parts, fmt.Sprintf("exit code %d", *f.ExitCode))
	}
	if f.DurationSeconds != nil {
		parts = append(parts, "after "+seconds(*f.DurationSeconds))
	}
	if f.Node != nil {
		parts = append(parts, "on "+*f.Node)
	}
	s.field(2, "Reason", strings.Join(parts, ", "))
	if f.Cost != nil {
		s.field(2, "Cost", fmt.Sprintf("$%.2f (as its publisher priced it)", *f.Cost))
	}
	if f.Usage != nil {
		var peaks []string
		for _, k := range []string{"peakMemory", "peakGPUMemory", "peakEphemeralStorage"} {
			if v, ok := (*f.Usage)[k]; ok {
				peaks = append(peaks, fmt.Sprintf("%s %s", k, byteCount(v)))
			}
		}
		if len(peaks) > 0 {
			s.field(2, "Usage", strings.Join(peaks, ", "))
		}
	}
	if f.Message != nil && *f.Message != "" {
		s.printf("  Message:\n")
		s.block(4, *f.Message, logLines)
	}
	if f.LogTail != nil && *f.LogTail != "" {
		s.printf("  Log tail:\n")
		s.block(4, *f.LogTail, logLines)
	}
}

func (s *showWriter) classification(c *client.Classification) {
	s.printf("Classification:\n")
	retry := "not retryable"
	if c.Retryable {
		retry = "retryable"
	}
	how := ""
	if deref(c.Learned) {
		how = ", by the learned classifier"
	}
	s.field(2, "Category", fmt.Sprintf("%s (confidence %.2f, %s%s)", c.Category, c.Confidence, retry, how))
	s.field(2, "Action", string(c.Action))
	s.field(2, "Rules", strings.Join(deref(c.Rules), ", "))
	if c.Alternatives != nil && len(*c.Alternatives) > 0 {
		var alts []string
		for _, a := range *c.Alternatives {
			alts = append(alts, fmt.Sprintf("%s %.2f", a.Category, a.Confidence))
		}
		s.field(2, "Alternatives", strings.Join(alts, ", "))
	}
	if ev := deref(c.Evidence); len(ev) > 0 {
		s.printf("  Evidence:\n")
		for _, l := range ev {
			s.printf("    %s\n", sanitizeLine(l))
		}
	}
}

func (s *showWriter) recommendation(r *client.Recommendation) {
	s.printf("Recommendation:\n")
	s.block(2, r.Explanation, 0)
	opts := deref(r.Options)
	if !r.Retry || len(opts) == 0 {
		s.printf("  No retry.\n")
		return
	}
	s.printf("Options (the chosen one and the Pareto front; approve --option N picks one):\n")
	rows := [][]string{{"OPTION", "CHOSEN", "P(SUCCESS)", "P(FIX)", "EXPECTED COST", "COST MULTIPLE", "RUNTIME", "CHANGES"}}
	hidden := 0
	for i := range opts {
		o := &opts[i]
		if i != r.Chosen && !o.Pareto {
			hidden++
			continue
		}
		chosen := ""
		if i == r.Chosen {
			chosen = "*"
		}
		rows = append(rows, []string{fmt.Sprint(i), chosen, fmt.Sprintf("%.2f", o.PSuccess), fmt.Sprintf("%.2f", o.PFix),
			fmt.Sprintf("$%.2f", o.ExpectedCost), fmt.Sprintf("%.2fx", o.CostMultiple), seconds(o.RuntimeSeconds), changesOf(o)})
	}
	s.table(2, rows)
	if hidden > 0 {
		s.printf("  (%d more options off the Pareto front: -o json has them)\n", hidden)
	}
}

// byteCount is a usage peak as people read it: the API gives a number of bytes (as
// a string or a number), shown in GiB or MiB; anything else as it is.
func byteCount(v any) string {
	var n float64
	switch x := v.(type) {
	case float64:
		n = x
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return x
		}
		n = f
	default:
		return fmt.Sprint(v)
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGi", n/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0fMi", n/(1<<20))
	}
	return fmt.Sprintf("%.0f bytes", n)
}

// stamp is t in UTC and how long ago it was: "2026-11-25T10:00:00Z (3m ago)".
func stamp(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), age(now, t))
}

// seconds is a duration in seconds as people read it: "30m34s".
func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

// idWord is how a remediation's id is printed: a shell word that is the id itself,
// so that what list and show print, typed or pasted after "approve", names that
// remediation and no other. An id with no unsafe rune is shellWord's; one with an
// unsafe rune (event ids may hold format characters: a zero-width space, a
// bidirectional override) is ANSI-C quoted, $'ev-1\u200b', with that rune escaped —
// where sanitizeLine's plain escape would look the same as, and a shell would read
// as, the id that spells the escape out (ev-1\u200b).
func idWord(id string) string {
	if strings.IndexFunc(id, unsafeRune) < 0 { // invalid UTF-8 decodes to utf8.RuneError, unsafe
		return shellWord(id)
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(id); {
		_, size := utf8.DecodeRuneInString(id[i:])
		switch c := id[i : i+size]; c {
		case `\`, `'`:
			b.WriteString(`\` + c)
		default:
			b.WriteString(sanitizeLine(c))
		}
		i += size
	}
	b.WriteString("'")
	return b.String()
}

// shellWord quotes an id for the shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !shellSafe(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellSafe reports whether r needs no quoting in a shell word.
func shellSafe(r rune) bool {
	return r == '-' || r == '_' || r == '.' || r == ':' || r == '/' || r == '@' ||
		r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}
