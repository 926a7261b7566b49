package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/service"
)

var (
	binOnce sync.Once
	binPath string
	binDir  string // the temporary directory binPath is in, when the tests built it
	binErr  error
)

// removeBinary removes what autofixBinary built (140 MB a run, left in the
// temporary directory otherwise); TestMain calls it once the tests are done.
func removeBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// autofixBinary builds the autofix binary once for the package's tests.
func autofixBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if bin := os.Getenv("AUTOFIX_TEST_BINARY"); bin != "" { // e.g. an older build, to see a test fail on it
			binPath = bin
			return
		}
		dir, err := os.MkdirTemp("", "autofix-bin-")
		if err != nil {
			binErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "autofix")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// hostile is the real binary serving on the embedded broker and the simulated
// cluster, with what an attacker can reach: the failures topic and the HTTP port.
type hostile struct {
	t                     *testing.T
	data, kafkaAddr, http string
	token                 string
	store                 *ledger.Store
	producer              *ingest.Producer
	logs                  *lockedBuffer
	n                     int
}

// lockedBuffer is a bytes.Buffer the child process writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startHostile(t *testing.T) *hostile {
	bin := autofixBinary(t)
	h := &hostile{t: t, data: t.TempDir(), kafkaAddr: freeAddr(t), http: freeAddr(t), logs: &lockedBuffer{}}
	cmd := exec.Command(bin, "serve", "--data-dir", h.data, "--http-addr", h.http, "--embedded-kafka-addr", h.kafkaAddr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("serve's log:\n%s", tail(h.logs.String(), 40))
		}
	})
	waitHTTP(t, "http://"+h.http+"/readyz", 60*time.Second)
	token, err := os.ReadFile(filepath.Join(h.data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	h.token = strings.TrimSpace(string(token))
	if h.store, err = ledger.Open(context.Background(), filepath.Join(h.data, "ledger.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.store.Close() })
	if h.producer, err = ingest.NewProducer(ingest.ProducerOptions{Brokers: []string{h.kafkaAddr}, Topic: "autofix.failures"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.producer.Close() })
	return h
}

// publish sends values to the failures topic as any producer could.
func (h *hostile) publish(values ...[]byte) {
	h.t.Helper()
	msgs := make([]ingest.Message, len(values))
	for i, v := range values {
		msgs[i] = ingest.Message{Key: []byte("k"), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.producer.Publish(ctx, msgs...); err != nil {
		h.t.Fatal(err)
	}
}

// stillWorks checks what the issue asks after every hostile message: a valid event
// that follows is recorded within seconds, and /readyz stays 200.
func (h *hostile) stillWorks(after string) {
	h.t.Helper()
	h.n++
	id := fmt.Sprintf("canary-%d", h.n)
	h.publish([]byte(`{"id":"` + id + `","job":{"namespace":"ml","name":"canary"},"failure":{"reason":"OOMKilled","exitCode":137}}`))
	h.about(id, "ml", "canary") // recorded (rejected: no such Job on the cluster)
	if r, code := getReady(h.http); code != http.StatusOK {
		h.t.Errorf("after %s: /readyz %d %+v, want 200", after, code, r)
	}
}

// about waits for an event about job namespace/name with id to be recorded — under
// its id, or, rejected by the verifier, under its position — and returns it.
func (h *hostile) about(id, namespace, name string) ledger.Remediation {
	h.t.Helper()
	var r ledger.Remediation
	waitFor(h.t, id+" to be recorded", 30*time.Second, func() bool {
		list, err := h.store.List(context.Background(), ledger.Filter{Namespace: namespace, Job: name, Limit: 100})
		if err != nil {
			return false
		}
		for _, m := range list {
			if m.Event != nil && m.Event.ID == id {
				r = m
				return true
			}
		}
		return false
	})
	return r
}

func (h *hostile) call(method, path, token string, body any) (int, string) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+h.http+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func forgedOOM(id, namespace, name, uid string) []byte {
	ev := failure.Event{ID: id, Source: "kubernetes", Job: failure.Job{Namespace: namespace, Name: name, UID: uid, Kind: failure.Training,
		Resources: failure.Resources{CPUMillis: 4000, MemoryBytes: 16 << 30}},
		Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 1800, Usage: failure.Usage{PeakMemoryBytes: 16 << 30}}}
	b, _ := json.Marshal(ev)
	return b
}

// TestAdversarial replays the findings of issue 11 against the real binary on the
// embedded broker and the simulated cluster. Each part failed on the main of
// before: forged events were acted on, one poison message stopped all processing,
// an oversized one wedged the dead-letter path.
func TestAdversarial(t *testing.T) {
	if testing.Short() {
		t.Skip("adversarial suite: builds and runs the binary")
	}
	h := startHostile(t)
	ctx := context.Background()
	// The demo's fixes run first: one of them succeeds, and a failed Job's spec is kept.
	waitFor(t, "the demo's OOM fixed", 90*time.Second, func() bool {
		list, err := h.store.List(ctx, ledger.Filter{Job: "resnet50-train-nightly", Limit: 10})
		return err == nil && len(list) == 1 && list[0].State == ledger.Succeeded
	})
	var doneUID, etlUID string
	waitFor(t, "the cluster's file to show the fix complete", 30*time.Second, func() bool {
		kube := openCluster(t, h.data)
		done, err := kube.BatchV1().Jobs(service.DemoNamespace).Get(ctx, "resnet50-train-nightly-af2", metav1.GetOptions{})
		if err != nil || !complete(done) {
			return false
		}
		etl, err := kube.BatchV1().Jobs(service.DemoNamespace).Get(ctx, "feature-etl", metav1.GetOptions{})
		if err != nil {
			return false
		}
		doneUID, etlUID = string(done.UID), string(etl.UID)
		return true
	})

	t.Run("forged failure of a Job that succeeded", func(t *testing.T) {
		id := "k8s-job-" + doneUID
		h.publish(forgedOOM(id, service.DemoNamespace, "resnet50-train-nightly-af2", doneUID))
		r := h.about(id, service.DemoNamespace, "resnet50-train-nightly-af2")
		if r.State != ledger.Rejected || !strings.Contains(r.Reason, "has not failed") || len(r.Attempts) != 0 {
			t.Errorf("forged OOM of a complete Job: %s (%q), %d attempts; want rejected, nothing submitted", r.State, r.Reason, len(r.Attempts))
		}
		h.stillWorks("a forged failure")
	})

	t.Run("kept spec claimed in another namespace", func(t *testing.T) {
		id := "k8s-job-" + etlUID + "-stuck" // the real id is taken; the forger uses the other the watcher gives
		h.publish(forgedOOM(id, "team-b", "feature-etl", etlUID))
		r := h.about(id, "team-b", "feature-etl")
		if r.State != ledger.Rejected || !strings.Contains(r.Reason, "no Job team-b/feature-etl with uid") {
			t.Errorf("team-a's spec claimed for team-b: %s (%q); want rejected", r.State, r.Reason)
		}
		h.stillWorks("a cross-namespace claim")
	})

	t.Run("chain labels and attempt 99", func(t *testing.T) {
		ev := failure.Event{ID: "labelled", Job: failure.Job{Namespace: service.DemoNamespace, Name: "evil", Attempt: 99,
			Labels: map[string]string{"autofix.io/chain": service.DemoNamespace + "/resnet50-train-nightly"}},
			Failure: failure.Signals{Reason: "OOMKilled", ExitCode: 137}}
		b, _ := json.Marshal(ev)
		h.publish(b)
		r := h.about("labelled", service.DemoNamespace, "evil")
		if r.State != ledger.Rejected || r.ChainID == service.DemoNamespace+"/resnet50-train-nightly" {
			t.Errorf("labelled event: %s in chain %s; want rejected, in no one else's chain", r.State, r.ChainID)
		}
		runs, err := h.store.ChainAttempts(ctx, []string{service.DemoNamespace + "/resnet50-train-nightly"})
		if err != nil || runs[service.DemoNamespace+"/resnet50-train-nightly"] != 2 {
			t.Errorf("the victim's chain counts %d runs (%v), want 2", runs[service.DemoNamespace+"/resnet50-train-nightly"], err)
		}
		h.stillWorks("a labelled event")
	})

	t.Run("poison numbers", func(t *testing.T) {
		h.publish([]byte(`{"id":"poison-timeout","job":{"namespace":"ml","name":"etl"},"failure":{"reason":"DeadlineExceeded","durationSeconds":1e308}}`))
		h.stillWorks("a timeout of 1e308 seconds")
		h.publish([]byte(`{"id":"poison-mb","job":{"namespace":"ml","name":"etl","params":{"mb":"9223372036854775807"},"tunables":{"mb":{"role":"micro_batch"}}},"failure":{"reason":"OOMKilled"}}`))
		h.stillWorks("an absurd micro-batch")
		dlq := readDLQ(t, h.kafkaAddr, 2)
		found := 0
		for v := range dlq {
			if strings.Contains(v, "poison-timeout") || strings.Contains(v, "poison-mb") {
				found++
			}
		}
		if found != 2 {
			t.Errorf("%d of the 2 poison messages on the dead-letter topic", found)
		}
		list, err := h.store.List(ctx, ledger.Filter{States: []ledger.State{ledger.Rejected}, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		reasons := ""
		for _, r := range list {
			reasons += r.Error + "\n"
		}
		for _, field := range []string{"failure.durationSeconds", "job.params.mb"} {
			if !strings.Contains(reasons, field) {
				t.Errorf("no rejection names %s:\n%s", field, reasons)
			}
		}
	})

	t.Run("oversized messages", func(t *testing.T) {
		w := &kafka.Writer{Addr: kafka.TCP(h.kafkaAddr), Topic: "autofix.failures", Compression: compress.Gzip, BatchBytes: 8 << 20,
			BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
		big := []byte(`{"id":"big","job":{"name":"j"},"failure":{"logTail":"` + strings.Repeat("x", 3<<20) + `"}}`)
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: big}); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		h.stillWorks("a 3 MiB message sent compressed")
		near := make([]byte, 1<<19)
		if _, err := rand.Read(near); err != nil {
			t.Fatal(err)
		}
		h.publish([]byte(hex.EncodeToString(near)[:(1<<20)-300]))
		h.stillWorks("a message just under the broker's limit")
		if n := strings.Count(h.logs.String(), "dead-letter failed; retrying"); n > 0 {
			t.Errorf("the dead-letter copy was retried %d times", n)
		}
	})

	t.Run("hostile rules", func(t *testing.T) {
		start := time.Now()
		code, body := h.call("POST", "/v1/rules:test", h.token, map[string]any{
			"files": map[string]string{"bomb.yaml": "rules:\n  - id: bomb\n    category: oom_memory\n    when: 'len(repeat(log, 300000)) > 0'\n"},
			"event": json.RawMessage(`{"id":"e","job":{"name":"j"},"failure":{"logTail":"x"}}`),
		})
		if code != http.StatusBadRequest || !strings.Contains(body, "bomb") {
			t.Errorf("rules:test with repeat(log, 300000): %d %s; want 400 naming the rule", code, body)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Logf("rules:test took %s", d)
		}
		h.stillWorks("a hostile rules:test")
	})

	t.Run("privileged pipeline", func(t *testing.T) {
		const evil = "name: evil\nnamespace: ml\nartifacts: s3://m\nstages:\n  - name: train\n    job:\n      spec:\n" +
			"        hostNetwork: true\n        containers: [{name: train, image: x, securityContext: {privileged: true}}]\n"
		code, body := h.call("POST", "/v1/pipelines", h.token, map[string]any{"yaml": evil, "run": "r1"})
		if code != http.StatusBadRequest || !strings.Contains(body, "privileged") || !strings.Contains(body, "hostNetwork") {
			t.Errorf("a privileged pipeline: %d %s; want 400 naming the fields", code, body)
		}
	})

	t.Run("login guessing", func(t *testing.T) {
		codes := make(chan int, 100)
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				form := url.Values{"token": {fmt.Sprintf("afx_guess%d", i)}}.Encode()
				resp, err := http.Post("http://"+h.http+"/ui/login", "application/x-www-form-urlencoded", strings.NewReader(form))
				if err != nil {
					codes <- 0
					return
				}
				_ = resp.Body.Close()
				codes <- resp.StatusCode
			})
		}
		wg.Wait()
		close(codes)
		throttled := 0
		for c := range codes {
			if c == http.StatusTooManyRequests {
				throttled++
			}
		}
		if throttled == 0 {
			t.Error("100 parallel bad logins: none answered 429")
		}
	})

	t.Run("readiness tells no internals", func(t *testing.T) {
		code, body := h.call("GET", "/readyz", "", nil)
		var r struct {
			Ready  bool              `json:"ready"`
			Checks map[string]string `json:"checks"`
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil || code != http.StatusOK {
			t.Fatalf("/readyz: %d %s (%v)", code, body, err)
		}
		for name, state := range r.Checks {
			if state != "ok" && state != "failing" && state != "not ready" {
				t.Errorf("/readyz without a token shows %s = %q, want a state only", name, state)
			}
		}
	})
}
