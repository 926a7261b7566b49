package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
)

// TestCrashLosesNothing runs the real `autofix serve` binary, publishes thousands of
// events (some malformed, some duplicated) while killing it with SIGKILL at random
// points, restarts it each time, and then checks what the issue asks: every valid
// event is in the ledger exactly once, every malformed one is on the dead-letter
// topic and in the ledger as rejected, and no remediation was submitted twice.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds the binary and restarts it several times")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "autofix")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	kafkaAddr, httpAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "autofix.yaml")
	// The smallest session timeout the broker accepts, so a killed member leaves the
	// group quickly; a generous rate limit so dispatch keeps up; no cluster (shadow
	// mode), so that every submission is a line in submissions.jsonl.
	if err := os.WriteFile(cfg, []byte("kafka:\n  sessionTimeout: 6s\n  maxBatch: 200\npolicy:\n  ratePerMinute: 1000000\n  burst: 10000\nkubernetes:\n  kubeconfig: none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--config", cfg, "--data-dir", data, "--http-addr", httpAddr,
			"--embedded-kafka-addr", kafkaAddr, "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitHTTP(t, "http://"+httpAddr+"/readyz", 30*time.Second)
		return cmd
	}

	rng := rand.New(rand.NewPCG(7, 11))
	const n = 3000
	var msgs []ingest.Message
	valid := map[string]bool{}
	malformed := map[string]bool{}
	for i := range n {
		var v []byte
		if i%20 == 7 { // malformed, each unique so each can be found on the DLQ
			v = []byte(fmt.Sprintf(`{"id":"bad-%d","job":{"name":"x","resources":{"memory":"%d GB"}},"failure":{}}`, i, i))
			malformed[string(v)] = true
		} else {
			ev := crashEvent(i)
			v, _ = json.Marshal(&ev)
			valid[ev.ID] = true
		}
		msgs = append(msgs, ingest.Message{Value: v})
		if i%10 == 3 { // a producer retry: the same message again, a little later
			msgs = append(msgs, ingest.Message{Value: v})
		}
	}

	cmd := start()
	// Publish with `autofix publish`, as an operator would: each line one message.
	publish := func(chunk []ingest.Message) error {
		var in bytes.Buffer
		for _, m := range chunk {
			in.Write(m.Value)
			in.WriteByte('\n')
		}
		pub := exec.Command(bin, "publish", "--brokers", kafkaAddr, "-")
		pub.Stdin = &in
		out, err := pub.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	// Kill it at random moments: while it is consuming, while it is committing, while
	// messages are still being published, and after publishing ended.
	const wantKills = 5
	kills := 0
	started := time.Now()
	killAfter := time.Duration(100+rng.IntN(600)) * time.Millisecond
	maybeKill := func() {
		if kills == wantKills || time.Since(started) < killAfter {
			return
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		cmd = start()
		started, killAfter = time.Now(), time.Duration(100+rng.IntN(600))*time.Millisecond
	}
	for sent := 0; sent < len(msgs); {
		chunk := msgs[sent:min(sent+50, len(msgs))]
		if err := publish(chunk); err != nil {
			// The broker lives in the killed process: publish the chunk again once it is
			// back (if it got through before the kill, that is more duplicates).
			time.Sleep(100 * time.Millisecond)
			continue
		}
		sent += len(chunk)
		time.Sleep(5 * time.Millisecond)
		maybeKill()
	}
	for kills < wantKills {
		time.Sleep(20 * time.Millisecond)
		maybeKill()
	}

	// Let it drain: every valid event recorded, and every approved memory fix
	// submitted (retries of preemptions wait out their backoff, a minute, and may
	// still be approved; they must not have been submitted twice either).
	var ledgerOut []ledgerLine
	deadline := testDeadline(t)
	for {
		ledgerOut = readLedger(t, bin, data)
		recorded, pending := 0, 0
		for _, l := range ledgerOut {
			if valid[l.EventID] {
				recorded++
			}
			if l.State == "approved" && l.Category == "oom_memory" {
				pending++
			}
		}
		if recorded == len(valid) && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("at the test's deadline: %d of %d valid events recorded, %d approved not submitted\nlogs:\n%s",
				recorded, len(valid), pending, tail(logs.String(), 40))
		}
		time.Sleep(300 * time.Millisecond)
	}
	dlq := readDLQ(t, kafkaAddr, len(malformed))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, tail(logs.String(), 20))
	}

	seen := map[string]int{}
	rejected := 0
	submitted := map[string]bool{}
	for _, l := range ledgerOut {
		seen[l.EventID]++
		if strings.HasPrefix(l.EventID, "kafka:") {
			rejected++
			if l.State != "rejected" || !strings.Contains(l.Error, "job.resources.memory") {
				t.Errorf("malformed message %s: state %s, error %q; want rejected naming job.resources.memory", l.EventID, l.State, l.Error)
			}
		}
		if l.State == "submitted" {
			for _, a := range l.Attempts {
				submitted[a.JobName] = true
			}
		}
	}
	for id := range valid {
		if seen[id] != 1 {
			t.Errorf("valid event %s is in the ledger %d times, want once", id, seen[id])
		}
	}
	if rejected < len(malformed) {
		t.Errorf("%d rejected messages in the ledger, want at least the %d malformed ones", rejected, len(malformed))
	}
	for m := range malformed {
		if !dlq[m] {
			t.Errorf("malformed message %.60q... is not on the dead-letter topic", m)
		}
	}
	subs, err := engine.ReadSubmissions(filepath.Join(data, "submissions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]int{}
	for _, s := range subs {
		jobs[s.JobName]++
		if jobs[s.JobName] == 2 {
			t.Errorf("job %s was submitted twice", s.JobName)
		}
		if !submitted[s.JobName] {
			t.Errorf("job %s was submitted but its remediation is not submitted in the ledger", s.JobName)
		}
	}
	if len(jobs) != len(submitted) {
		t.Errorf("%d jobs submitted, %d remediations submitted in the ledger; want one job each", len(jobs), len(submitted))
	}
	t.Logf("%d messages published (%d valid events, %d malformed), %d kills; ledger %d events, %d submitted, DLQ %d",
		len(msgs), len(valid), len(malformed), kills, len(ledgerOut), len(submitted), len(dlq))
}

// crashEvent is failure i of a small fleet: OOMs, preemptions and code errors.
func crashEvent(i int) failure.Event {
	ev := failure.Event{ID: fmt.Sprintf("crash-%d", i), Job: failure.Job{Namespace: "ml", Name: fmt.Sprintf("job-%d", i),
		Template: fmt.Sprintf("tmpl-%d", i%40), Kind: failure.Batch, Attempt: 1,
		Resources: failure.Resources{CPUMillis: 2000, MemoryBytes: int64(4+i%8) << 30}}}
	switch i % 3 {
	case 0:
		ev.Failure = failure.Signals{Reason: "OOMKilled", ExitCode: 137, DurationSeconds: 600}
	case 1:
		ev.Failure = failure.Signals{Reason: "DisruptionTarget", ExitCode: 143, Message: "Pod was preempted", DurationSeconds: 300}
	default:
		ev.Failure = failure.Signals{Reason: "Error", ExitCode: 1, DurationSeconds: 20,
			LogTail: "Traceback (most recent call last):\n  File \"etl.py\", line 3\nKeyError: 'user_id'"}
	}
	return ev
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func waitHTTP(t *testing.T, url string, usually time.Duration) {
	t.Helper()
	waitFor(t, url+" ready", usually, func() bool {
		resp, err := http.Get(url) // #nosec G107 -- the test's own server
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func readLedger(t *testing.T, bin, data string) []ledgerLine {
	t.Helper()
	out, err := exec.Command(bin, "ledger", "--data-dir", data, "--json").Output()
	if err != nil {
		t.Fatalf("autofix ledger: %v", err)
	}
	var lines []ledgerLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l ledgerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("ledger line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// readDLQ reads the dead-letter topic until it has seen want distinct values.
func readDLQ(t *testing.T, addr string, want int) map[string]bool {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "autofix.failures.dlq", MaxWait: 500 * time.Millisecond})
	defer func() { _ = r.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < want {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Logf("reading the dead-letter topic: %v (have %d of %d)", err, len(got), want)
			break
		}
		got[string(m.Value)] = true
	}
	return got
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
