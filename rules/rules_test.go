package rules_test

import (
	"bufio"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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

// githubFile matches the address of a file in a GitHub repository at some commit or
// branch: the same document whatever the commit.
var githubFile = regexp.MustCompile(`^https://github\.com/([^/]+/[^/]+)/blob/[^/]+/(.+)$`)

// renamedRepos are repositories the corpus cites under an old and a new name.
var renamedRepos = map[string]string{"kubernetes/kubernetes.github.io": "kubernetes/website"}

// sourceKey is the document a source address names.
func sourceKey(src string) string {
	m := githubFile.FindStringSubmatch(src)
	if m == nil {
		return src
	}
	repo := strings.ToLower(m[1])
	if to, ok := renamedRepos[repo]; ok {
		repo = to
	}
	return "github.com/" + repo + "/" + m[2]
}

// sharedDocuments are lines of the early rounds that quote a documentation page an
// earlier set quoted at another commit (found in wave 13, when the check above learned
// to see through commits and renames). They have long been trained on or kept for the
// simulator, and stay; no new line may join them.
var sharedDocuments = map[string]bool{
	"r08-209": true, "r08-218": true, "r08-219": true, "r09-163": true, "r11-163": true, "r11-165": true,
	"r11-168": true, "r11-185": true, "r12-007": true, "r12-009": true, "r12-029": true, "r12-030": true,
	"r12-031": true, "r12-032": true, "r12-033": true, "r12-059": true, "r12-064": true, "r13-034": true,
	"r13-035": true, "r16-078": true, "r08-192": true,
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
			if prev, dup := sources[key]; dup && prev.file != where && !(sharedDocuments[line.ID] && sharedDocuments[prev.id]) {
				t.Errorf("%s:%d: source %s is also used by %s (%s)", path, n, line.Source, prev.file, prev.id)
			}
			if _, dup := sources[key]; !dup {
				sources[key] = use{where, line.ID}
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
