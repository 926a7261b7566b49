package rules_test

import (
	"bufio"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/rules"
)

func defaultClassifier(t testing.TB) *classifier.Classifier {
	t.Helper()
	rs, err := classifier.Load(rules.FS)
	if err != nil {
		t.Fatalf("the default rules do not load: %v", err)
	}
	return classifier.New(rs, classifier.Options{})
}

// TestDefaultRulesPassTheirTests runs the test cases the rule files carry, as
// `autofix rules check` does.
func TestDefaultRulesPassTheirTests(t *testing.T) {
	c := defaultClassifier(t)
	if n := len(c.RuleSet().Tests()); n < 30 {
		t.Errorf("the default rules carry %d test cases, want at least 30", n)
	}
	for _, f := range c.Check() {
		t.Error(f.Error())
	}
}

// TestDefaultRulesCoverTheTaxonomy checks that every category but unknown has rules.
func TestDefaultRulesCoverTheTaxonomy(t *testing.T) {
	c := defaultClassifier(t)
	have := map[failure.Category]int{}
	for _, r := range c.RuleSet().Rules() {
		have[r.Category]++
	}
	for _, cat := range failure.Categories() {
		if cat != failure.Unknown && have[cat] == 0 {
			t.Errorf("no default rule for category %s", cat)
		}
	}
}

// labelledSets are the labelled files and the floor each must stay above. The floors
// sit a little under what the rules score today, so that a change that makes the
// rules generalise worse fails here; see testdata/README.md for how each set was made.
var labelledSets = []struct {
	file                  string
	minCategory, minRetry float64
	maxFalseRetryRate     float64 // false retries / events
}{
	{"dev.jsonl", 0.93, 0.97, 0.02},
	{"holdout-1.jsonl", 0.91, 0.93, 0.05},
	{"holdout-2.jsonl", 0.88, 0.91, 0.06},
	{"holdout-3.jsonl", 0.91, 0.94, 0.04},
	{"holdout-4.jsonl", 0.90, 0.93, 0.03},
}

func TestLabelledSets(t *testing.T) {
	c := defaultClassifier(t)
	for _, set := range labelledSets {
		t.Run(set.file, func(t *testing.T) {
			items := readLabelled(t, set.file)
			r := classifier.Evaluate(c, items)
			t.Logf("%s: %d events, category %.3f, retry %.3f, false retries %d, missed retries %d",
				set.file, r.Total, r.CategoryAccuracy(), r.RetryAccuracy(), r.FalseRetries, r.MissedRetries)
			if got := r.CategoryAccuracy(); got < set.minCategory {
				t.Errorf("category accuracy = %.3f, want >= %.3f", got, set.minCategory)
			}
			if got := r.RetryAccuracy(); got < set.minRetry {
				t.Errorf("retry-decision accuracy = %.3f, want >= %.3f", got, set.minRetry)
			}
			if rate := float64(r.FalseRetries) / float64(r.Total); rate > set.maxFalseRetryRate {
				t.Errorf("false retries = %d (%.3f of events), want at most %.3f", r.FalseRetries, rate, set.maxFalseRetryRate)
			}
			if t.Failed() {
				for _, m := range r.Mistakes {
					t.Logf("line %d %s: want %s/%v, got %s/%v (rules %v)", m.Item.Line, m.Item.Event.ID,
						m.Item.Expected.Category, m.Item.Expected.Retryable, m.Got.Category, m.Got.Retryable, m.Got.Rules)
				}
			}
		})
	}
}

func readLabelled(t *testing.T, name string) []classifier.Labelled {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	items, err := classifier.ReadLabelled(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return items
}

// githubFile matches the path of a file in a GitHub repository as github.com shows it
// (blob, raw, blame or tree at a commit or branch); githubThread an issue or pull
// request.
var (
	githubFile   = regexp.MustCompile(`^/([^/]+/[^/]+)/(?:blob|raw|blame|tree)/[^/]+/(.+)$`)
	githubThread = regexp.MustCompile(`^/([^/]+/[^/]+)/(?:issues|pull|discussions)/(\d+)`)
)

// renamedRepos are repositories the corpus cites (or may cite) under an old and a new
// name; GitHub redirects the old one.
var renamedRepos = map[string]string{
	"kubernetes/kubernetes.github.io": "kubernetes/website",
	"volcengine/verl":                 "verl-project/verl",
	"pytorch/torchtune":               "meta-pytorch/torchtune",
}

// docMirrors are documentation sites whose pages are built from the Markdown files of
// a GitHub repository: a page and its source file are one document. A file's key is
// its path under dir with ".md" (and an "_index" or "index" name) taken off, under
// site's prefix; a page's is docPageKey's.
var docMirrors = []struct{ repo, dir, site string }{
	{"microsoftdocs/azure-docs", "articles/", "learn.microsoft.com/azure/"},
	{"microsoftdocs/azure-ai-docs", "articles/", "learn.microsoft.com/azure/"},
	{"microsoftdocs/supportarticles-docs", "support/", "learn.microsoft.com/troubleshoot/"},
	{"kubernetes/website", "content/", "kubernetes.io/"},
}

// learnLocale matches the locale every learn.microsoft.com address starts with
// ("/en-us/"; the pages are built from one English file); kubeLocale a kubernetes.io
// translation's first segment ("/zh-cn/", "/ja/"), whose page is built from its own
// file under content/<locale>/ (English pages have no such segment: content/en/).
var (
	learnLocale = regexp.MustCompile(`^/[a-z]{2}-[a-z]{2,4}/`)
	kubeLocale  = regexp.MustCompile(`^/[a-z]{2}(?:-[a-z]{2,4})?/`)
)

// docPageKey is the key of a page of a docMirrors site (host without "www.").
func docPageKey(host, path string) string {
	path = strings.ToLower(path)
	if host == "kubernetes.io" {
		if kubeLocale.MatchString(path) {
			return host + path
		}
		return host + "/en" + path
	}
	return "learn.microsoft.com/" + strings.TrimPrefix(learnLocale.ReplaceAllString(path, "/"), "/")
}

// sourceKey is the document a source address names: the same file at every commit,
// branch and view, under the repository's current name; an issue or pull request
// whatever the anchor; any page without its query, fragment and trailing slash.
func sourceKey(src string) string {
	u, err := url.Parse(src)
	if err != nil {
		return src
	}
	host := strings.TrimPrefix(strings.ToLower(u.Host), "www.")
	path := strings.TrimSuffix(u.Path, "/")
	repo := func(r string) string {
		r = strings.ToLower(r)
		if to, ok := renamedRepos[r]; ok {
			return to
		}
		return r
	}
	file := func(r, p string) string {
		r = repo(r)
		for _, m := range docMirrors {
			if r == m.repo && strings.HasPrefix(p, m.dir) {
				p = strings.TrimSuffix(strings.TrimPrefix(p, m.dir), ".md")
				p = strings.TrimSuffix(strings.TrimSuffix(p, "/_index"), "/index")
				return strings.ToLower(m.site + p)
			}
		}
		return "github.com/" + r + "/" + p
	}
	switch host {
	case "raw.githubusercontent.com":
		if parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 4); len(parts) == 4 {
			p := parts[3]
			if parts[2] == "refs" { // refs/heads/<branch>/<path>
				if rest := strings.SplitN(p, "/", 3); len(rest) == 3 {
					p = rest[2]
				}
			}
			return file(parts[0]+"/"+parts[1], p)
		}
	case "github.com":
		if m := githubFile.FindStringSubmatch(path); m != nil {
			return file(m[1], m[2])
		}
		if m := githubThread.FindStringSubmatch(path); m != nil {
			return "github.com/" + repo(m[1]) + "/#" + m[2]
		}
	case "docs.microsoft.com", "learn.microsoft.com", "kubernetes.io":
		return docPageKey(host, path)
	}
	return host + path
}

// TestSourceKey checks that the addresses of one document share a key and those of
// different documents do not.
func TestSourceKey(t *testing.T) {
	same := [][2]string{
		{"https://github.com/MicrosoftDocs/azure-docs/blob/0123abc/articles/hdinsight/hadoop/hdinsight-troubleshoot-out-disk-space.md",
			"https://learn.microsoft.com/en-us/azure/hdinsight/hadoop/hdinsight-troubleshoot-out-disk-space"},
		{"https://raw.githubusercontent.com/MicrosoftDocs/azure-ai-docs/main/articles/machine-learning/how-to-troubleshoot-online-endpoints.md",
			"https://docs.microsoft.com/en-gb/azure/machine-learning/how-to-troubleshoot-online-endpoints/"},
		{"https://github.com/MicrosoftDocs/SupportArticles-docs/blob/16edcd9/support/azure/azure-kubernetes/connectivity/intermittent-timeouts-or-server-issue.md",
			"https://learn.microsoft.com/en-us/troubleshoot/azure/azure-kubernetes/connectivity/intermittent-timeouts-or-server-issue#cause"},
		{"https://github.com/kubernetes/website/blob/0189ae0/content/en/docs/tasks/job/pod-failure-policy.md",
			"https://kubernetes.io/docs/tasks/job/pod-failure-policy/"},
		{"https://github.com/kubernetes/kubernetes.github.io/blob/abc/content/en/docs/concepts/workloads/pods/_index.md",
			"https://kubernetes.io/docs/concepts/workloads/pods/"},
		{"https://github.com/volcengine/verl/issues/12", "https://github.com/verl-project/verl/pull/12#issuecomment-1"},
		{"https://github.com/pytorch/torchtune/issues/638", "https://github.com/meta-pytorch/torchtune/issues/638"},
		{"https://github.com/Owner/Repo/blob/main/docs/a.md", "https://github.com/owner/repo/raw/abc123/docs/a.md"},
		{"https://learn.microsoft.com/en-US/azure/hdinsight/x", "https://learn.microsoft.com/en-us/azure/hdinsight/x"},
		{"https://raw.githubusercontent.com/MicrosoftDocs/azure-ai-docs/refs/heads/main/articles/machine-learning/x.md",
			"https://learn.microsoft.com/en-us/azure/machine-learning/x"},
		{"https://raw.githubusercontent.com/o/r/refs/heads/main/docs/a.md", "https://github.com/o/r/blob/0123abc/docs/a.md"},
		{"https://github.com/kubernetes/website/blob/main/content/zh-cn/docs/tasks/job/pod-failure-policy.md",
			"https://kubernetes.io/zh-cn/docs/tasks/job/pod-failure-policy/"},
	}
	for _, p := range same {
		if a, b := sourceKey(p[0]), sourceKey(p[1]); a != b {
			t.Errorf("one document, two keys:\n%s -> %s\n%s -> %s", p[0], a, p[1], b)
		}
	}
	differ := [][2]string{
		{"https://learn.microsoft.com/en-us/azure/hdinsight/a", "https://learn.microsoft.com/en-us/troubleshoot/azure/hdinsight/a"},
		{"https://github.com/MicrosoftDocs/azure-docs/blob/main/includes/a.md", "https://learn.microsoft.com/en-us/azure/a"},
		{"https://github.com/kubernetes/website/blob/main/content/zh-cn/docs/a.md", "https://kubernetes.io/docs/a/"},
		{"https://kubernetes.io/zh-cn/docs/tasks/job/pod-failure-policy/", "https://kubernetes.io/docs/tasks/job/pod-failure-policy/"},
		{"https://learn.microsoft.com/ef/core/x", "https://learn.microsoft.com/core/x"},
		{"https://github.com/volcengine/verl/issues/12", "https://github.com/verl-project/verl/issues/13"},
	}
	for _, p := range differ {
		if a := sourceKey(p[0]); a == sourceKey(p[1]) {
			t.Errorf("two documents, one key %s: %s and %s", a, p[0], p[1])
		}
	}
}

// sharedDocuments are the 27 lines of the early rounds that quote one of 9
// documentation pages from two sets, at two commits or in two spellings of the address
// (found in wave 13, when the check learned to see through commits, views and
// renames). They have long been trained on or kept for the
// simulator, and stay; no new line may join them.
var sharedDocuments = map[string]bool{
	"r08-192": true, "r08-193": true, "r08-209": true, "r08-218": true, "r08-219": true, "r09-163": true,
	"r11-163": true, "r11-164": true, "r11-165": true, "r11-166": true, "r11-168": true, "r11-185": true,
	"r12-007": true, "r12-009": true, "r12-012": true, "r12-029": true, "r12-030": true, "r12-031": true,
	"r12-032": true, "r12-033": true, "r12-059": true, "r12-060": true, "r12-064": true, "r12-065": true,
	"r13-034": true, "r13-035": true, "r16-078": true,
}

// TestLabelledDataHygiene checks what makes the labelled sets trustworthy: every line
// has a source address and a valid label, ids are unique, and no source document is
// used by two sets (a held-out set must not share threads or pages with the
// development set, nor the training sets with the simulator's real text).
func TestLabelledDataHygiene(t *testing.T) {
	files, err := filepath.Glob("testdata/*.jsonl")
	if err != nil || len(files) < 2 {
		t.Fatalf("labelled files: %v %v", files, err)
	}
	files = append(files, "../sim/realtext/messages.jsonl")
	type use struct{ file, id string }
	ids := map[string]string{}
	sources := map[string]use{}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, failure.MaxPayload)
		for n := 1; sc.Scan(); n++ {
			var line struct {
				ID       string `json:"id"`
				Source   string `json:"source"`
				Expected struct {
					Category  failure.Category `json:"category"`
					Retryable *bool            `json:"retryable"`
				} `json:"expected"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Errorf("%s:%d: %v", path, n, err)
				continue
			}
			where := filepath.Base(path)
			if prev, dup := ids[line.ID]; dup {
				t.Errorf("%s:%d: id %q also in %s", path, n, line.ID, prev)
			}
			ids[line.ID] = where
			if u, err := url.Parse(line.Source); err != nil || u.Scheme != "https" || u.Host == "" {
				t.Errorf("%s:%d: source %q is not an https address", path, n, line.Source)
			}
			key := sourceKey(line.Source)
			if prev, dup := sources[key]; !dup {
				sources[key] = use{where, line.ID}
			} else if prev.file != where && (!sharedDocuments[line.ID] || !sharedDocuments[prev.id]) {
				t.Errorf("%s:%d: source %s is also used by %s (%s)", path, n, line.Source, prev.file, prev.id)
			}
			if line.Expected.Retryable == nil {
				t.Errorf("%s:%d: expected.retryable missing", path, n)
			}
			if cat := line.Expected.Category; cat != failure.ImagePull && line.Expected.Retryable != nil &&
				*line.Expected.Retryable != cat.DefaultRetryable() {
				t.Errorf("%s:%d: %s labelled retryable=%v, against the taxonomy", path, n, cat, *line.Expected.Retryable)
			}
		}
		_ = f.Close()
	}
}

// TestReviewedRegressions holds the failures hostile reviews of the rules of waves
// 12-18 found retried wrongly, each not retryable, some also with a category the
// answer must not have. They are asserted on the embedded classifier, not as rule
// tests, because the answer may come from the model.
func TestReviewedRegressions(t *testing.T) {
	// The service's classifier: the embedded rules, tables and model, at the default
	// thresholds.
	c, err := classifier.LoadDefault(classifier.Sources{}, classifier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, reason string
		exitCode     int
		message, log string
		notCategory  failure.Category // "": any
	}{
		{name: "rank 0 crashed before the nccl id: the store timeout on rank 7 is its echo", reason: "Error", exitCode: 1,
			log: "[rank0]: Traceback (most recent call last):\n[rank0]:   File \"train.py\", line 41, in <module>\n[rank0]:     cfg = CONFIGS[args.model]\n[rank0]: KeyError: 'qwen2'\n" +
				"[rank7]: RuntimeError: [7] is setting up NCCL communicator and retrieving ncclUniqueId from [0] via c10d key-value store by key '0', but store->get('0') got error: Socket Timeout\n" +
				"Exception raised from recvBytes at ../torch/csrc/distributed/c10d/Utils.hpp:604 (most recent call first)",
			notCategory: failure.Timeout},
		{name: "an infiniband local protection error is set-up, not a flapping link", reason: "Error", exitCode: 1,
			log: "node-3:412:1043 [2] NCCL INFO NET/IB : GPU Direct RDMA Enabled for HCA 0 'mlx5_0'\n" +
				"node-3:412:1043 [2] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from peer 10.0.0.4<50125> with error 4, opcode 0, len 0, vendor err 81 (Recv)"},
		{name: "an infiniband completion error 10 alone", reason: "Error", exitCode: 1,
			log: "misc/ibvwrap.cc NCCL WARN NET/IB : Got completion with error 10, opcode 1, len 32768, vendor err 136"},
		{name: "a registry address that does not resolve is no transient pull", reason: "Error", exitCode: 1,
			log:         "Error response from daemon: Get \"https://regsitry.corp.example/v2/\": dial tcp: lookup regsitry.corp.example on 10.0.0.2:53: no such host",
			notCategory: failure.ImagePull},
		{name: "a quota line beside a machine type that does not exist is no wait for capacity", reason: "Error", exitCode: 1,
			log: "ERROR: (gcloud.dataproc.clusters.create) INVALID_ARGUMENT: Multiple validation errors:\n - Insufficient 'CPUS' quota. Requested 128.0, available 72.0.\n" +
				" - Machine type with name 'n2-standard-999' does not exist in zone 'us-central1-a'.",
			notCategory: failure.SchedulingCapacity},
	} {
		ev := &failure.Event{ID: "e", Job: failure.Job{Name: "j", Attempt: 1},
			Failure: failure.Signals{Reason: tc.reason, ExitCode: tc.exitCode, Message: tc.message, LogTail: tc.log}}
		got := c.Classify(ev)
		if tc.notCategory != "" && got.Category == tc.notCategory || got.Retryable {
			t.Errorf("%s: %s, retryable %v (rules %v); want neither %s nor retryable", tc.name, got.Category, got.Retryable, got.Rules, tc.notCategory)
		}
	}
}

// TestSSHUnknownHostIsNotTheTemporaryKind: ssh's "Could not resolve hostname X: Name
// or service not known" (a name in a hostfile that does not exist) once matched
// curl's "Could not resolve host:" in the rule for temporary DNS failures, the surest
// of the DNS rules. It is left to the weaker rule for names that do not resolve, and
// curl's wording still reads as temporary.
func TestSSHUnknownHostIsNotTheTemporaryKind(t *testing.T) {
	c := defaultClassifier(t)
	classify := func(log string) failure.Classification {
		return c.Classify(&failure.Event{ID: "e", Job: failure.Job{Name: "j", Attempt: 1},
			Failure: failure.Signals{Reason: "Error", ExitCode: 255, LogTail: log}})
	}
	if got := classify("ssh: Could not resolve hostname node-7: Name or service not known"); slices.Contains(got.Rules, "dns-temporary-failure") {
		t.Errorf("ssh's unknown host: rules %v, want no dns-temporary-failure", got.Rules)
	}
	if got := classify("fatal: unable to access 'https://github.com/acme/data.git/': Could not resolve host: github.com"); !slices.Contains(got.Rules, "dns-temporary-failure") {
		t.Errorf("git over curl: rules %v, want dns-temporary-failure", got.Rules)
	}
}
