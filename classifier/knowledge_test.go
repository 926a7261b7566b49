package classifier_test

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/rules"
)

func defaultKnowledge(t testing.TB) *classifier.Knowledge {
	t.Helper()
	sub, err := fs.Sub(rules.Knowledge, "knowledge")
	if err != nil {
		t.Fatal(err)
	}
	k, err := classifier.LoadKnowledge(sub)
	if err != nil {
		t.Fatalf("the embedded knowledge tables do not load: %v", err)
	}
	return k
}

// hitKeys returns "table/key" of each hit.
func hitKeys(hits []classifier.KnowledgeHit) []string {
	var out []string
	for _, h := range hits {
		out = append(out, h.Entry.Table+"/"+h.Entry.Key)
	}
	return out
}

func TestKnowledgeFindsTheVocabulary(t *testing.T) {
	k := defaultKnowledge(t)
	for _, tc := range []struct {
		name         string
		reason       string
		exit         int
		message, log string
		want, not    []string
	}{
		{name: "errno by number", log: "OSError: [Errno 28] No space left on device: '/tmp/x'", want: []string{"errno/ENOSPC"}},
		{name: "errno by name", log: "write /data/shard-3: ENOSPC", want: []string{"errno/ENOSPC"}},
		{name: "not inside a word", log: "decoding video frames; the EIOS module loaded", not: []string{"errno/EIO"}},
		{name: "grpc", message: "rpc error: code = Unavailable desc = connection error", want: []string{"grpc/UNAVAILABLE"}},
		{name: "http code", log: "botocore.exceptions.ClientError: An error occurred (SlowDown) ... status code: 503", want: []string{"http/5xx", "exception/ThrottlingError"}},
		{name: "http reason phrase", log: "requests.exceptions.HTTPError: 429 Too Many Requests for url", want: []string{"http/429"}},
		{name: "no status in a longer number", log: "processed 5034 records", not: []string{"http/5xx"}},
		{name: "java exception in a Spark stage failure", log: "Job aborted due to stage failure: Task 3 failed 4 times, most recent failure: java.lang.OutOfMemoryError: Java heap space",
			want: []string{"exception/java.lang.OutOfMemoryError"}},
		{name: "cuda", log: "RuntimeError: CUDA error: an illegal memory access was encountered", want: []string{"accelerator/cudaErrorIllegalAddress"}},
		{name: "nccl", log: "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1275, remote process exited or there was a network error, NCCL version 2.18.1\nncclRemoteError: A call failed possibly due to a network error",
			want: []string{"accelerator/ncclRemoteError"}},
		{name: "reason", reason: "OOMKilled", exit: 137, want: []string{"kubernetes/OOMKilled", "exit/SIGKILL"}},
		{name: "reason in another case", reason: "evicted", want: []string{"kubernetes/Evicted"}},
		{name: "exit code alone", exit: 127, want: []string{"exit/command-not-found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &failure.Event{Failure: failure.Signals{Reason: tc.reason, ExitCode: tc.exit, Message: tc.message, LogTail: tc.log}}
			got := hitKeys(k.Find(ev))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("hits %v, want %s among them", got, w)
				}
			}
			for _, n := range tc.not {
				if slices.Contains(got, n) {
					t.Errorf("hits %v, want no %s", got, n)
				}
			}
		})
	}
}

func TestKnowledgeHitsStrongestFirstAndOncePerEntry(t *testing.T) {
	k := defaultKnowledge(t)
	ev := &failure.Event{Failure: failure.Signals{ExitCode: 137,
		LogTail: "No space left on device\nENOSPC again\n[Errno 28] and once more no space left on device"}}
	hits := k.Find(ev)
	seen := map[string]bool{}
	for _, key := range hitKeys(hits) {
		if seen[key] {
			t.Errorf("hits %v: %s more than once", hitKeys(hits), key)
		}
		seen[key] = true
	}
	for i := 1; i < len(hits); i++ {
		if hits[i].Entry.Confidence > hits[i-1].Entry.Confidence {
			t.Errorf("hit %d (%s, %.2f) after a weaker one (%.2f)", i, hits[i].Entry.Key, hits[i].Entry.Confidence, hits[i-1].Entry.Confidence)
		}
	}
}

func TestKnowledgeLayersOverrideByTableAndKey(t *testing.T) {
	sub, err := fs.Sub(rules.Knowledge, "knowledge")
	if err != nil {
		t.Fatal(err)
	}
	override := fstest.MapFS{"site.yaml": {Data: []byte(`table: errno
entries:
  - key: EIO
    match: ["input/output error"]
    category: disk_full
    retryable: true
    confidence: 0.8
  - key: ENOSPC
    disabled: true
  - key: ESITE
    match: ["our storage gateway said no"]
    category: dependency_unavailable
    retryable: true
    confidence: 0.7
`)}}
	k, err := classifier.LoadKnowledge(sub, override)
	if err != nil {
		t.Fatal(err)
	}
	ev := &failure.Event{Failure: failure.Signals{LogTail: "Input/output error\nno space left on device\nour storage gateway said no"}}
	hits := k.Find(ev)
	got := map[string]failure.Category{}
	for _, h := range hits {
		got[h.Entry.Table+"/"+h.Entry.Key] = h.Entry.Category
	}
	if got["errno/EIO"] != failure.DiskFull {
		t.Errorf("EIO = %q, want the override's disk_full", got["errno/EIO"])
	}
	if _, ok := got["errno/ENOSPC"]; ok {
		t.Errorf("ENOSPC hit although the override disabled it: %v", got)
	}
	if got["errno/ESITE"] != failure.DependencyUnavailable {
		t.Errorf("the override's new entry: %v", got)
	}
	if n := len(k.Entries()); n != len(defaultKnowledge(t).Entries()) {
		t.Errorf("%d entries, want %d (one replaced, one removed, one added)", n, len(defaultKnowledge(t).Entries()))
	}
}

func TestKnowledgeErrorsNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"bad category", "table: t\nentries:\n  - key: K\n    match: [xx]\n    category: sad\n    retryable: true\n    confidence: 0.5\n", `t.yaml:3: K: category: "sad"`},
		{"no retryable", "table: t\nentries:\n  - key: K\n    match: [xx]\n    category: timeout\n    confidence: 0.5\n", "t.yaml:3: K: retryable: required"},
		{"confidence out of range", "table: t\nentries:\n  - key: K\n    match: [xx]\n    category: timeout\n    retryable: true\n    confidence: 1.5\n", "confidence: required, in (0, 1]"},
		{"bad http", "table: t\nentries:\n  - key: K\n    http: [\"600\"]\n    category: timeout\n    retryable: true\n    confidence: 0.5\n", `http[0]: "600"`},
		{"nothing to match", "table: t\nentries:\n  - key: K\n    category: timeout\n    retryable: true\n    confidence: 0.5\n", "match, reasons, exitCodes or http"},
		{"one-byte phrase", "table: t\nentries:\n  - key: K\n    match: [x]\n    category: timeout\n    retryable: true\n    confidence: 0.5\n", `match[0]: "x"`},
		{"unknown field", "table: t\nentries:\n  - key: K\n    matches: [xx]\n    category: timeout\n    retryable: true\n    confidence: 0.5\n", "matches"},
		{"bad table", "table: T T\nentries: []\n", `table: "T T"`},
		{"bad key", "table: t\nentries:\n  - key: 'a b'\n    match: [xx]\n    category: timeout\n    retryable: true\n    confidence: 0.5\n", `key: "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := classifier.LoadKnowledge(fstest.MapFS{"t.yaml": {Data: []byte(tc.file)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	big := fstest.MapFS{"t.yaml": {Data: []byte("table: t\n# " + strings.Repeat("x", 1<<20))}}
	if _, err := classifier.LoadKnowledge(big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a file over 1 MiB: err = %v", err)
	}
}

// FuzzKnowledge feeds arbitrary tables to LoadKnowledge: an error or tables whose
// Find never panics and returns only entries of the tables.
func FuzzKnowledge(f *testing.F) {
	f.Add("table: t\nentries:\n  - key: K\n    match: [\"no space\", ENOSPC]\n    http: [5xx, \"429\"]\n    reasons: [Evicted]\n    exitCodes: [137]\n    category: disk_full\n    retryable: true\n    confidence: 0.9\n")
	f.Add("table: t\nentries: [{key: a, match: ['((', ']]'], category: timeout, retryable: false, confidence: 1}]")
	ev := &failure.Event{Failure: failure.Signals{Reason: "Evicted", ExitCode: 137, Message: "status code 503",
		LogTail: "no space left\nENOSPC ((x]] \xff"}}
	f.Fuzz(func(t *testing.T, file string) {
		k, err := classifier.LoadKnowledge(fstest.MapFS{"t.yaml": {Data: []byte(file)}})
		if err != nil {
			return
		}
		tables := map[string]bool{}
		for _, e := range k.Entries() {
			tables[e.Table] = true
		}
		for _, h := range k.Find(ev) {
			if !tables[h.Entry.Table] || !h.Entry.Category.Valid() || h.Entry.Confidence <= 0 || h.Entry.Confidence > 1 {
				t.Fatalf("hit %+v of table %q, want one of the tables loaded %v", h, h.Entry.Table, tables)
			}
		}
	})
}
