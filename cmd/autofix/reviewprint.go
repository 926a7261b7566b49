package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/autofix/autofix/api/client"
)

// What the review commands print comes from a server, and through it from failure
// events anyone able to publish to Kafka wrote: every string is sanitized before it
// reaches the terminal, so that a job name, a category or a log line cannot move the
// cursor, rewrite the screen, set the window title or reorder text (ANSI escape
// sequences, carriage returns, C1 controls, bidirectional overrides). Such a
// character is shown escaped (`\x1b`, `\u202e`), so that its presence is visible.

// unsafeRune reports whether r must not reach a terminal as it is: a control
// character (C0, DEL, C1), a format character (bidirectional controls, zero-width
// characters), a line or paragraph separator, or invalid UTF-8.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) ||
		r == utf8.RuneError
}

// escapeUnsafe writes s with each unsafe rune but those keep allows escaped.
func escapeUnsafe(s string, keep func(rune) bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unsafeRune(r) || keep != nil && keep(r):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xFFFF:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// sanitizeLine makes s safe to print on one line: every unsafe rune, line breaks
// and tabs included, escaped.
func sanitizeLine(s string) string { return escapeUnsafe(s, nil) }

// sanitizeText makes multi-line s safe to print: line breaks and tabs stay, every
// other unsafe rune (a carriage return too) is escaped.
func sanitizeText(s string) string {
	return escapeUnsafe(s, func(r rune) bool { return r == '\n' || r == '\t' })
}

// cell is s for a table cell: sanitized, "-" when empty.
func cell(s string) string { return orDash(sanitizeLine(s)) }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// writeJSON writes the server's JSON value raw, indented, with every unsafe rune in
// it written as a \u escape: the same JSON value, safe on a terminal.
func writeJSON(w io.Writer, raw []byte) error {
	var ind bytes.Buffer
	if err := json.Indent(&ind, raw, "", "  "); err != nil {
		return fmt.Errorf("the server's answer is not valid JSON: %w", err)
	}
	var out bytes.Buffer
	b := ind.Bytes()
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out.WriteString(`\ufffd`)
		// JSON allows only space, tab, CR and LF raw outside strings and no
		// character below U+0020 inside them (json.Indent checked), so these are
		// the indentation's.
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || !unsafeRune(r):
			out.WriteRune(r)
		case r > 0xFFFF:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
		i += size
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// age is how long ago t was, as kubectl shows it ("45s", "3m20s", "5d").
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t))
}

// changesOf is what an option changes from the failed run, for people.
func changesOf(o *client.Option) string {
	if o == nil || o.Changes == nil || len(*o.Changes) == 0 {
		return ""
	}
	return strings.Join(*o.Changes, ", ")
}

// maxActionCell is the widest ACTION cell of the table, in bytes; -o wide shows it
// whole.
const maxActionCell = 40

// writeList writes remediations as kubectl writes a list: a header and a row
// each; wide adds the state, the attempt, the chosen option's chances and cost, and
// the reason of the last decision.
func writeList(w io.Writer, items []client.RemediationSummary, wide bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	head := "ID\tNAMESPACE\tJOB\tCATEGORY\tCONFIDENCE\tACTION\tAGE"
	if wide {
		head += "\tSTATE\tATTEMPT\tP(SUCCESS)\tEXPECTED COST\tCOST MULTIPLE\tREASON"
	}
	fmt.Fprintln(tw, head)
	for i := range items {
		it := &items[i]
		action := cell(changesOf(it.Chosen))
		if !wide {
			action = clip(action, maxActionCell)
		}
		row := []string{idWord(it.Id), cell(deref(it.Namespace)), cell(deref(it.Job)), cell(string(deref(it.Category))),
			fmt.Sprintf("%.2f", it.Confidence), action, age(now, it.ReceivedAt)}
		if wide {
			pSuccess, cost, multiple := "-", "-", "-"
			if o := it.Chosen; o != nil {
				pSuccess, cost, multiple = fmt.Sprintf("%.2f", o.PSuccess), fmt.Sprintf("$%.2f", o.ExpectedCost), fmt.Sprintf("%.2fx", o.CostMultiple)
			}
			row = append(row, cell(string(it.State)), fmt.Sprint(it.Attempt), pSuccess, cost, multiple, cell(deref(it.Reason)))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// resourcesText is resources as people read them: "cpu 8, memory 24Gi, 1 GPU".
func resourcesText(r client.Resources) string {
	var parts []string
	if r.Cpu != nil {
		parts = append(parts, "cpu "+*r.Cpu)
	}
	if r.Memory != nil {
		parts = append(parts, "memory "+*r.Memory)
	}
	if r.Gpu != nil && *r.Gpu > 0 {
		g := fmt.Sprintf("%d GPU", *r.Gpu)
		if *r.Gpu > 1 {
			g += "s"
		}
		if r.GpuType != nil {
			g += " " + *r.GpuType
		}
		parts = append(parts, g)
	}
	if r.EphemeralStorage != nil {
		parts = append(parts, "ephemeral storage "+*r.EphemeralStorage)
	}
	return strings.Join(parts, ", ")
}

// writeDecision says what a decision did: the remediation's state now and, for an
// approval, the job that will run and what it changes (option: the option asked for,
// nil for the chosen one).
func writeDecision(w io.Writer, verb string, v *client.RemediationView, option *int) error {
	id := idWord(v.Id)
	state := sanitizeLine(string(v.State))
	if verb != "approve" || v.Retry == nil {
		past := map[string]string{"approve": "approved", "reject": "rejected"}[verb]
		_, err := fmt.Fprintf(w, "remediation %s %s (now %s)\n", id, past, state)
		return err
	}
	job := v.Retry.Job
	if ns := deref(v.Namespace); ns != "" {
		job = ns + "/" + job
	}
	what := ""
	if r := v.Recommendation; r != nil {
		n := r.Chosen
		if option != nil {
			n = *option
		}
		if opts := deref(r.Options); n >= 0 && n < len(opts) {
			what = changesOf(&opts[n])
		}
	}
	if what == "" {
		what = resourcesText(v.Retry.Resources)
	}
	_, err := fmt.Fprintf(w, "remediation %s approved (now %s): attempt %d runs as job %s (%s)\n", id, state, v.Retry.Number,
		sanitizeLine(job), orDash(sanitizeLine(what)))
	return err
}
