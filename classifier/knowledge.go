package classifier

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/autofix/autofix/failure"
)

// Knowledge is a compiled set of knowledge tables: the error vocabularies engineers
// read — errno names, gRPC codes, HTTP statuses, exception types, CUDA / cuDNN / NCCL
// errors, Kubernetes reasons, exit codes — each entry mapping what a failure prints to
// a category and retry decision with a confidence. A failure's hits are evidence in
// its classification and features of the learned model. Knowledge is immutable and
// safe for concurrent use.
type Knowledge struct {
	entries []KnowledgeEntry
	// phrases finds the lower-cased phrases of every entry in one scan; phraseEntry
	// maps a phrase to its entry and bound says which of its ends need a word
	// boundary in the text (bit 0 the start, bit 1 the end).
	phrases     *literalSet
	phraseEntry []int32
	bound       []uint8
	reasons     map[string][]int32 // lower-cased reason -> entries
	exits       map[int][]int32    // exit code -> entries
}

// KnowledgeEntry is one entry of a knowledge table.
type KnowledgeEntry struct {
	Table      string
	Key        string
	Category   failure.Category
	Retryable  bool
	Confidence float64
	// File and Line say where the entry is defined.
	File string
	Line int
}

// KnowledgeHit is an entry a failure matched, and what matched it: a phrase as it
// appears in the table, "reason OOMKilled" or "exit code 137".
type KnowledgeHit struct {
	Entry *KnowledgeEntry
	Match string
}

// Limits on knowledge tables, which are untrusted input like rule files.
const (
	maxKnowledgeFileBytes = 1 << 20
	maxKnowledgeEntries   = 5000
	maxKnowledgePhrases   = 20000
	maxPhraseBytes        = 200
)

var (
	tablePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,39}$`)
	keyPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,79}$`)
)

type knowledgeFile struct {
	Table   string          `yaml:"table"`
	Entries []knowledgeSpec `yaml:"entries"`
}

type knowledgeSpec struct {
	Key        string   `yaml:"key"`
	Match      []string `yaml:"match"`
	Reasons    []string `yaml:"reasons"`
	ExitCodes  []int    `yaml:"exitCodes"`
	HTTP       []string `yaml:"http"`
	Category   string   `yaml:"category"`
	Retryable  *bool    `yaml:"retryable"`
	Confidence *float64 `yaml:"confidence"`
	// Disabled removes an entry of the same table and key that an earlier layer
	// defined.
	Disabled bool `yaml:"disabled"`
}

// LoadKnowledge reads the knowledge tables (*.yaml at the root) of each layer in turn;
// an entry of a later layer replaces the entry of the same table and key of an
// earlier one, or removes it when it says disabled: true. Any problem fails the whole
// load with errors naming file, line, entry and field.
func LoadKnowledge(layers ...fs.FS) (*Knowledge, error) {
	type located struct {
		entry KnowledgeEntry
		spec  knowledgeSpec
	}
	var (
		errs  []error
		order []string
		byKey = map[string]located{}
	)
	for _, fsys := range layers {
		names, err := fs.Glob(fsys, "*.yaml")
		if err != nil {
			return nil, err
		}
		slices.Sort(names)
		for _, name := range names {
			data, err := readLimited(fsys, name, maxKnowledgeFileBytes)
			if err != nil {
				errs = append(errs, &LoadError{File: name, Err: err})
				continue
			}
			var doc yaml.Node
			var kf knowledgeFile
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := yaml.Unmarshal(data, &doc); err != nil {
				errs = append(errs, &LoadError{File: name, Err: err})
				continue
			}
			if err := dec.Decode(&kf); err != nil {
				errs = append(errs, &LoadError{File: name, Err: err})
				continue
			}
			if !tablePattern.MatchString(kf.Table) {
				errs = append(errs, &LoadError{File: name, Err: fmt.Errorf("table: %q: want a lower-case name of at most 40 characters", kf.Table)})
				continue
			}
			lines := itemLines(&doc, "entries")
			for i := range kf.Entries {
				spec := &kf.Entries[i]
				line := 0
				if i < len(lines) {
					line = lines[i]
				}
				e, err := spec.entry(kf.Table)
				if err != nil {
					errs = append(errs, &LoadError{File: name, Line: line, Rule: spec.Key, Err: err})
					continue
				}
				e.File, e.Line = name, line
				id := kf.Table + "/" + spec.Key
				if _, ok := byKey[id]; !ok {
					order = append(order, id)
				}
				byKey[id] = located{e, *spec}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	k := &Knowledge{reasons: map[string][]int32{}, exits: map[int][]int32{}}
	var phrases []string
	for _, id := range order {
		l := byKey[id]
		if l.spec.Disabled {
			continue
		}
		n := int32(len(k.entries)) //nolint:gosec // bounded by maxKnowledgeEntries
		k.entries = append(k.entries, l.entry)
		for _, p := range l.spec.Match {
			phrases = append(phrases, strings.ToLower(p))
			k.phraseEntry = append(k.phraseEntry, n)
		}
		for _, code := range l.spec.HTTP {
			for _, p := range httpPhrases(code) {
				phrases = append(phrases, p)
				k.phraseEntry = append(k.phraseEntry, n)
			}
		}
		for _, r := range l.spec.Reasons {
			k.reasons[strings.ToLower(r)] = append(k.reasons[strings.ToLower(r)], n)
		}
		for _, c := range l.spec.ExitCodes {
			k.exits[c] = append(k.exits[c], n)
		}
	}
	switch {
	case len(k.entries) > maxKnowledgeEntries:
		return nil, fmt.Errorf("knowledge: %d entries: over the limit of %d", len(k.entries), maxKnowledgeEntries)
	case len(phrases) > maxKnowledgePhrases:
		return nil, fmt.Errorf("knowledge: %d phrases: over the limit of %d", len(phrases), maxKnowledgePhrases)
	}
	if err := checkAutomaton("knowledge: the phrases", phrases); err != nil {
		return nil, err
	}
	k.bound = make([]uint8, len(phrases))
	for i, p := range phrases {
		if isWordByte(p[0]) {
			k.bound[i] |= 1
		}
		if isWordByte(p[len(p)-1]) {
			k.bound[i] |= 2
		}
	}
	k.phrases = newLiteralSet(phrases)
	return k, nil
}

// entry validates spec, an entry of table.
func (spec *knowledgeSpec) entry(table string) (KnowledgeEntry, error) {
	e := KnowledgeEntry{Table: table, Key: spec.Key, Category: failure.Category(spec.Category)}
	switch {
	case !keyPattern.MatchString(spec.Key):
		return e, fmt.Errorf("key: %q: want letters, digits and ._:/- (at most 80)", spec.Key)
	case spec.Disabled:
		return e, nil
	case !e.Category.Valid():
		return e, fmt.Errorf("category: %q is not a category of the taxonomy", spec.Category)
	case spec.Retryable == nil:
		return e, errors.New("retryable: required")
	case spec.Confidence == nil || !(*spec.Confidence > 0 && *spec.Confidence <= 1):
		return e, errors.New("confidence: required, in (0, 1]")
	case len(spec.Match)+len(spec.Reasons)+len(spec.ExitCodes)+len(spec.HTTP) == 0:
		return e, errors.New("match, reasons, exitCodes or http: at least one is required")
	}
	e.Retryable, e.Confidence = *spec.Retryable, *spec.Confidence
	for i, p := range spec.Match {
		if len(p) < 2 || len(p) > maxPhraseBytes {
			return e, fmt.Errorf("match[%d]: %q: want 2 to %d bytes", i, p, maxPhraseBytes)
		}
	}
	for i, c := range spec.HTTP {
		if httpPhrases(c) == nil {
			return e, fmt.Errorf("http[%d]: %q: want a status code (100-599) or a class such as 5xx", i, c)
		}
	}
	for i, c := range spec.ExitCodes {
		if c < -64 || c > 255 {
			return e, fmt.Errorf("exitCodes[%d]: %d: want -64 to 255", i, c)
		}
	}
	return e, nil
}

// httpStatusText are the reason phrases of the HTTP statuses clients print, which
// find "503 Service Unavailable" as well as "status code 503".
var httpStatusText = map[int]string{
	400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
	405: "method not allowed", 408: "request timeout", 409: "conflict", 410: "gone",
	413: "payload too large", 422: "unprocessable entity", 429: "too many requests",
	500: "internal server error", 501: "not implemented", 502: "bad gateway",
	503: "service unavailable", 504: "gateway timeout", 505: "http version not supported",
}

// httpPrefixes are how clients introduce a status code.
var httpPrefixes = []string{
	"status code ", "status code: ", "status code=", "status_code=", "status_code: ", "status=",
	"status: ", "statuscode: ", "http ", "http/1.1 ", "http/1.0 ", "http/2 ", "http error ",
	"http status ", "error code ", "error code: ", "response code ", "response code: ",
	"returned ", "httperror: ", "\"status\": ", "\"status\":", "statuscode=", "code: ", "(status ",
	"request failed [", // R's httr
}

// httpPhrases returns the lower-cased phrases that report the status code (or class,
// "5xx") c, or nil when c is neither.
func httpPhrases(c string) []string {
	var codes []int
	if len(c) == 3 && strings.HasSuffix(c, "xx") && c[0] >= '1' && c[0] <= '5' {
		lo := int(c[0]-'0') * 100
		for code := range httpStatusText {
			if code >= lo && code < lo+100 {
				codes = append(codes, code)
			}
		}
		slices.Sort(codes)
		// A class is found by its name too ("a 5xx response").
		return append(phrasesOf(codes), c)
	}
	n, err := strconv.Atoi(c)
	if err != nil || n < 100 || n > 599 {
		return nil
	}
	return phrasesOf([]int{n})
}

func phrasesOf(codes []int) []string {
	var out []string
	for _, code := range codes {
		s := strconv.Itoa(code)
		for _, p := range httpPrefixes {
			out = append(out, p+s)
		}
		if t, ok := httpStatusText[code]; ok {
			out = append(out, s+" "+t, s+" - "+t, s+" ("+t)
		}
	}
	return out
}

// Entries returns the entries, in the order of their tables' files.
func (k *Knowledge) Entries() []KnowledgeEntry { return k.entries }

// Find returns the entries ev matches: its reason, its exit code and the phrases of
// its message and log tail.
func (k *Knowledge) Find(ev *failure.Event) []KnowledgeHit {
	var st knowledgeScratch
	return k.find(&st, ev.Failure.Reason, ev.Failure.ExitCode, nil,
		strings.ToLower(ev.Failure.Message), strings.ToLower(ev.Failure.LogTail))
}

// knowledgeScratch is the reusable state of find.
type knowledgeScratch struct {
	seen []uint32 // entry -> gen when hit
	gen  uint32
}

// find appends to dst one hit per entry that the reason, the exit code or one of the
// lower-cased texts match; strongest first.
func (k *Knowledge) find(st *knowledgeScratch, reason string, exit int, dst []KnowledgeHit, texts ...string) []KnowledgeHit {
	first := len(dst)
	dst = k.phrasesIn(st, k.begin(st, reason, exit, dst), texts...)
	sortHits(dst[first:])
	return dst
}

// phrasesIn appends the entries whose phrases the lower-cased texts hold, in a scan
// of the phrases' own automaton.
func (k *Knowledge) phrasesIn(st *knowledgeScratch, dst []KnowledgeHit, texts ...string) []KnowledgeHit {
	for _, lower := range texts {
		k.phrases.each(lower, func(id int32, end int) {
			dst = k.phraseAt(st, id, lower, end, dst)
		})
	}
	return dst
}

// begin starts a search: it appends the entries of the reason and the exit code.
func (k *Knowledge) begin(st *knowledgeScratch, reason string, exit int, dst []KnowledgeHit) []KnowledgeHit {
	if len(st.seen) != len(k.entries) {
		st.seen, st.gen = make([]uint32, len(k.entries)), 0
	}
	st.gen++
	if st.gen == 0 {
		clear(st.seen)
		st.gen = 1
	}
	if reason != "" && len(k.reasons) > 0 {
		for _, e := range k.reasons[strings.ToLower(reason)] {
			dst = k.add(st, e, "reason "+reason, dst)
		}
	}
	if exit != 0 {
		for _, e := range k.exits[exit] {
			dst = k.add(st, e, "exit code "+strconv.Itoa(exit), dst)
		}
	}
	return dst
}

// phraseAt appends the entry of phrase id, found ending at end of the lower-cased
// text, unless it is part of a longer word or its entry was already found.
func (k *Knowledge) phraseAt(st *knowledgeScratch, id int32, lower string, end int, dst []KnowledgeHit) []KnowledgeHit {
	p := k.phrases.patterns[id]
	start := end - len(p)
	if k.bound[id]&1 != 0 && start > 0 && isWordByte(lower[start-1]) ||
		k.bound[id]&2 != 0 && end < len(lower) && isWordByte(lower[end]) {
		return dst // inside a longer word
	}
	return k.add(st, k.phraseEntry[id], p, dst)
}

func (k *Knowledge) add(st *knowledgeScratch, e int32, match string, dst []KnowledgeHit) []KnowledgeHit {
	if st.seen[e] == st.gen {
		return dst
	}
	st.seen[e] = st.gen
	return append(dst, KnowledgeHit{Entry: &k.entries[e], Match: match})
}

// sortHits orders hits strongest first.
func sortHits(hits []KnowledgeHit) {
	slices.SortStableFunc(hits, func(a, b KnowledgeHit) int {
		return cmp.Compare(b.Entry.Confidence, a.Entry.Confidence)
	})
}

// scanner is one Aho–Corasick automaton over the rules' literals, the knowledge
// tables' phrases and the words that mark a log's error lines, so that each text of
// an event is scanned once for all three.
type scanner struct {
	all       *literalSet
	knowledge *Knowledge
	// Patterns first.. are the knowledge phrases, errorWords.. the error words.
	first, errorWords int32
	// separate is set when the three together would make too large an automaton:
	// the knowledge phrases are then found in a scan of their own.
	separate bool
}

// newScanner builds the scanner of rs's literals and k's phrases (k may be empty),
// one automaton unless its table could exceed limit cells.
func newScanner(rs *RuleSet, k *Knowledge, limit int) *scanner {
	pats := slices.Clone(rs.literals.patterns)
	sc := &scanner{knowledge: k, first: int32(len(pats))} //nolint:gosec // bounded by the rule limits
	merged := append(slices.Clip(pats), k.phrases.patterns...)
	if automatonCells(append(slices.Clip(merged), errorWords.patterns...)) > limit {
		sc.separate = true
	} else {
		pats = merged
	}
	sc.errorWords = int32(len(pats)) //nolint:gosec // bounded by the table limits
	pats = append(pats, errorWords.patterns...)
	sc.all = newLiteralSet(pats)
	return sc
}

// emptyKnowledge is the knowledge of a classifier given no tables.
var emptyKnowledge = &Knowledge{phrases: newLiteralSet(nil), reasons: map[string][]int32{}, exits: map[int][]int32{}}

func isWordByte(b byte) bool {
	return b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
}
