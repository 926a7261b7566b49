package classifier

import (
	"slices"
	"strconv"
	"strings"
)

// The learned model reads a failure as a set of hashed features: word unigrams and
// bigrams and in-word character 4-grams of the message and of the log tail's error
// lines, and the structured signals — reason, exit code and signal, the last
// exception's type, the knowledge tables' hits and, optionally, the rules that
// matched. Hashing keeps the model's size fixed whatever the vocabulary, and a word no
// training text had still lands in a bucket.

// Feature namespaces: a feature's hash starts from its namespace, so that a word and,
// say, an exception of the same name are different features.
const (
	nsWord byte = iota + 1
	nsBigram
	nsChar
	nsReason
	nsExit
	nsSignal
	nsException
	nsExceptionShort
	nsKnowledge
	nsKnowledgeCategory
	nsRule
	nsRuleCategory
	nsKind
	nsShape
)

// Bounds on what the features read, so that their cost does not grow with the log.
const (
	maxErrorLines    = 40  // the last error lines of the log
	maxFeatureLine   = 320 // bytes of a line
	maxMessageBytes  = 2048
	tailLines        = 3 // the log's last lines are read whatever they say
	charGram         = 4
	minCharGramWord  = 5 // words shorter than this give no character n-grams
	maxFeatureTokens = 4096
)

// errorWords mark the lines of a log worth reading: where something went wrong.
var errorWords = newLiteralSet([]string{
	"error", "exception", "fail", "fatal", "killed", "abort", "denied", "refused",
	"timeout", "timed out", "oom", "out of memory", "unable", "cannot", "can't",
	"could not", "couldn't", "panic", "invalid", "not found", "no such", "exceeded",
	"unavailable", "reset", "evict", "preempt", "terminated", "signal", "traceback",
	"errno", "insufficient", "forbidden", "unauthorized", "exhausted", "no space",
	"mismatch", "unexpected", "not supported", "unsupported", "missing", "lost",
	"crash", "segmentation", "core dumped", "xid", "nccl", "cuda", "status code",
	"exit code", "exited", "backoff", "throttl", "too many", "quota", "corrupt",
})

// featureScratch is the reusable state of one feature extraction.
type featureScratch struct {
	marks []int // starts of the log's error lines
	out   []uint32
	// lines are the error lines read, lines of the log itself.
	lines []string
	// rowSeen marks, with rowGen, the model rows a prediction has counted.
	rowSeen []uint32
	rowGen  uint32
}

// fnv32 is FNV-1a over a namespace and s.
func fnv32(ns byte, s string) uint32 {
	h := uint32(2166136261)
	h = (h ^ uint32(ns)) * 16777619
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// signals is what features read of a failure beyond its text.
type signals struct {
	reason    string
	exitCode  int
	kind      string
	exception string
	hits      []KnowledgeHit
	rules     []*Rule // matched, nil when the model does not read rules
	memHigh   bool
	gpuHigh   bool
}

// features sets st.out to the hashed features of a failure — of the message, of the
// log (lower is it lower-cased) and of sig — in no order and possibly repeated.
func (st *featureScratch) features(message, log, lower string, sig *signals) []uint32 {
	st.out = st.out[:0]
	st.text(clipBytes(message, maxMessageBytes))
	for _, line := range st.errorLines(log, lower) {
		st.text(clipBytes(line, maxFeatureLine))
	}
	add := func(ns byte, s string) { st.out = append(st.out, fnv32(ns, s)) }
	add(nsReason, strings.ToLower(sig.reason))
	add(nsExit, strconv.Itoa(sig.exitCode))
	if c := sig.exitCode; c > 128 && c <= 128+64 {
		add(nsSignal, strconv.Itoa(c-128))
	}
	add(nsKind, sig.kind)
	if e := sig.exception; e != "" {
		add(nsException, strings.ToLower(e))
		add(nsExceptionShort, strings.ToLower(e[strings.LastIndexByte(e, '.')+1:]))
	}
	for _, h := range sig.hits {
		add(nsKnowledge, h.Entry.Table+"/"+h.Entry.Key)
		add(nsKnowledgeCategory, string(h.Entry.Category)+strconv.FormatBool(h.Entry.Retryable))
	}
	for _, r := range sig.rules {
		add(nsRule, r.ID)
		add(nsRuleCategory, string(r.Category))
	}
	switch {
	case message == "" && log == "":
		add(nsShape, "no-text")
	case log == "":
		add(nsShape, "no-log")
	}
	if sig.memHigh {
		add(nsShape, "memory-at-limit")
	}
	if sig.gpuHigh {
		add(nsShape, "gpu-memory-at-limit")
	}
	return st.out // with repeats: the model counts each row once
}

// errorLines returns the log's lines that say something went wrong (st.marks, whose
// starts the scan of the log found) and its last lines, at most maxErrorLines of
// them, the last ones. It sorts and extends st.marks.
func (st *featureScratch) errorLines(log, lower string) []string {
	// The last lines.
	end := len(lower)
	for range tailLines {
		trimmed := strings.TrimRight(lower[:end], "\n")
		if trimmed == "" {
			break
		}
		start := strings.LastIndexByte(trimmed, '\n') + 1
		st.marks = append(st.marks, start)
		end = start
	}
	slices.Sort(st.marks)
	st.marks = slices.Compact(st.marks)
	if len(st.marks) > maxErrorLines {
		st.marks = st.marks[len(st.marks)-maxErrorLines:]
	}
	// The marks are offsets in lower, whose n-th line is the log's n-th line but not
	// always at the same offset (lower-casing can change a rune's width): walk both
	// line by line.
	st.lines = st.lines[:0]
	lpos, tpos := 0, 0
	for _, s := range st.marks {
		for lpos < s {
			nl, tn := strings.IndexByte(lower[lpos:], '\n'), strings.IndexByte(log[tpos:], '\n')
			if nl < 0 || tn < 0 {
				return st.lines
			}
			lpos, tpos = lpos+nl+1, tpos+tn+1
		}
		line, _, _ := strings.Cut(log[tpos:], "\n")
		st.lines = append(st.lines, line)
	}
	return st.lines
}

// text appends the word, bigram and character n-gram features of one line. Words are
// ASCII (isWordByte), so lower-casing is a byte at a time, into buf, without
// allocating.
func (st *featureScratch) text(line string) {
	var prev uint32
	havePrev := false
	var buf [maxWordBytes]byte
	for i := 0; i < len(line) && len(st.out) < maxFeatureTokens; {
		for i < len(line) && !isWordByte(line[i]) {
			i++
		}
		j := i
		for j < len(line) && isWordByte(line[j]) {
			j++
		}
		if i == j {
			break
		}
		raw := line[i:j]
		i = j
		tok := normalise(raw, buf[:0])
		h := fnv32b(nsWord, tok)
		st.out = append(st.out, h)
		if havePrev {
			st.out = append(st.out, fnvAddb(prev^uint32(nsBigram), tok))
		}
		prev, havePrev = h, true
		// The parts of a camelCase or snake_case name are words too.
		st.nameParts(raw)
		if len(tok) >= minCharGramWord && tok[0] != '#' {
			for k := 0; k+charGram <= len(tok); k++ {
				st.out = append(st.out, fnv32b(nsChar, tok[k:k+charGram]))
			}
		}
	}
}

// maxWordBytes bounds a word: the longest text read (a line is cut to
// maxFeatureLine, the message to maxMessageBytes).
const maxWordBytes = maxMessageBytes

var (
	numberToken = []byte("#n")
	hexToken    = []byte("#h")
)

// normalise lower-cases a word into buf and folds numbers: up to three digits stay
// (exit codes, statuses, errno), longer numbers and hex strings become "#n" and "#h".
func normalise(w string, buf []byte) []byte {
	digits, hex := 0, true
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			hex = false
		}
	}
	switch {
	case digits == len(w) && len(w) > 3:
		return numberToken
	case digits > 0 && hex && len(w) >= 6:
		return hexToken
	case digits > 0 && digits*2 >= len(w) && len(w) > 3:
		return numberToken
	}
	for i := 0; i < len(w) && len(buf) < cap(buf); i++ {
		buf = append(buf, lowerByte(w[i]))
	}
	return buf
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// nameParts appends the word features of the parts of "OutOfMemoryError" or
// "out_of_memory", if the word has more than one.
func (st *featureScratch) nameParts(w string) {
	start, parts := 0, 0
	emit := func(p string) {
		if p != "" {
			st.out = append(st.out, fnvLower(nsWord, p))
		}
	}
	first := len(st.out)
	for i := 1; i < len(w); i++ {
		c, p := w[i], w[i-1]
		switch {
		case c == '_':
			if i > start {
				emit(w[start:i])
				parts++
			}
			start = i + 1
		case c >= 'A' && c <= 'Z' && p >= 'a' && p <= 'z':
			emit(w[start:i])
			parts++
			start = i
		}
	}
	if start == 0 {
		st.out = st.out[:first] // one part: the word itself
		return
	}
	if start < len(w) {
		emit(w[start:])
		parts++
	}
	if parts < 2 {
		st.out = st.out[:first]
	}
}

// fnv32b is fnv32 over bytes.
func fnv32b(ns byte, s []byte) uint32 {
	h := uint32(2166136261)
	h = (h ^ uint32(ns)) * 16777619
	for _, c := range s {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// fnvLower is fnv32 of s lower-cased.
func fnvLower(ns byte, s string) uint32 {
	h := uint32(2166136261)
	h = (h ^ uint32(ns)) * 16777619
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(lowerByte(s[i]))) * 16777619
	}
	return h
}

// fnvAddb continues h over a separator and s (for bigrams).
func fnvAddb(h uint32, s []byte) uint32 {
	h = (h ^ ' ') * 16777619
	for _, c := range s {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:] // the end says most
}
