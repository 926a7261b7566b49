package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/internal/testpki"
	"github.com/autofix/autofix/ledger"
)

// reviewEnv is a running `autofix serve` (in this process, on free ports, over TLS
// with a certificate of a test CA, on no cluster), its SQLite ledger opened beside it,
// and a token of each role in a file of its own.
type reviewEnv struct {
	url        string
	ca         *testpki.CA
	store      *ledger.Store
	tokens     map[auth.Role]string
	tokenFiles map[auth.Role]string
	http       *http.Client
}

func startReviewService(t *testing.T) *reviewEnv {
	t.Helper()
	// What the tests' environment holds must not choose the token or the server.
	t.Setenv("AUTOFIX_TOKEN", "")
	t.Setenv("AUTOFIX_SERVER", "")
	ca := testpki.NewCA(t, "review-test")
	leaf := ca.Server(t, "autofix")
	cfg := config.Default()
	cfg.Kubernetes.Kubeconfig = config.NoCluster
	cfg.DataDir, cfg.HTTP.Addr, cfg.Kafka.EmbeddedAddr = t.TempDir(), freeAddr(t), freeAddr(t)
	cfg.HTTP.TLS = config.TLS{CertFile: leaf.CertFile, KeyFile: leaf.KeyFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &reviewEnv{url: "https://" + cfg.HTTP.Addr, ca: ca, tokens: map[auth.Role]string{}, tokenFiles: map[auth.Role]string{}}
	ts, err := auth.OpenStore(filepath.Join(cfg.DataDir, auth.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, role := range map[string]auth.Role{"ada": auth.Admin, "val": auth.Approver, "vic": auth.Viewer} {
		if e.tokens[role], err = ts.Create(name, role); err != nil {
			t.Fatal(err)
		}
		e.tokenFiles[role] = writeSecret(t, dir, string(role)+".token", e.tokens[role]+"\n")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	e.http = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, &cfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitFor(t, "serve ready", 30*time.Second, func() bool {
		resp, err := e.http.Get(e.url + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if e.store, err = ledger.Open(context.Background(), cfg.LedgerDSN()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.store.Close() })
	return e
}

// writeSecret writes data to dir/name, mode 0600, and returns the path.
func writeSecret(t *testing.T, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cli runs `autofix review ARGS...` against the service, trusting the test CA, with
// the token file of role ("" gives no token flag).
func (e *reviewEnv) cli(t *testing.T, role auth.Role, args ...string) (int, string, string) {
	t.Helper()
	full := append([]string{"review"}, args...)
	full = append(full, "--server", e.url, "--ca-file", e.ca.CertFile)
	if role != "" {
		full = append(full, "--token-file", e.tokenFiles[role])
	}
	return runCmd(t, "", full...)
}

// reviewEvent is an OOMKilled training job's FailureEvent, id, namespace and name
// set.
func reviewEvent(id, namespace, name string) string {
	return fmt.Sprintf(`{"id":%q,"time":"2026-11-25T10:00:00Z","source":"kubernetes","job":{"namespace":%q,"name":%q,`+
		`"template":"resnet50-train","kind":"training","attempt":1,"image":"registry.local/train:1.4","resources":{"cpu":"8","memory":"16Gi"}},`+
		`"failure":{"reason":"OOMKilled","exitCode":137,"durationSeconds":1834,"node":"node-3",`+
		`"logTail":"epoch 3 step 1200 loss 1.92\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB","usage":{"peakMemory":"15.9Gi"}}}`,
		id, namespace, name)
}

// pending records evJSON as the policy does when it keeps a fix for review, with the
// service's own recommendation of it (POST /v1/recommendations). edit, when not nil,
// changes the event and the recommendation before they are recorded.
func (e *reviewEnv) pending(t *testing.T, evJSON string, edit func(*failure.Event, *failure.Recommendation)) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/v1/recommendations", strings.NewReader(evJSON))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.tokens[auth.Viewer])
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var rec failure.Recommendation
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rec) != nil || len(rec.Options) == 0 {
		t.Fatalf("POST /v1/recommendations: %d %s; want a recommendation with options", resp.StatusCode, body)
	}
	ev, err := failure.Decode([]byte(evJSON))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&ev, &rec)
	}
	if _, err := e.store.Record(context.Background(), []ledger.Entry{{EventID: ev.ID, Event: &ev, ChainID: ev.Job.Namespace + "/" + ev.Job.Name,
		Recommendation: &rec, State: ledger.PendingReview, Reason: "review: the test keeps it", Actor: "policy"}}); err != nil {
		t.Fatal(err)
	}
	return ev.ID
}

// remediation is what the ledger holds of id.
func (e *reviewEnv) remediation(t *testing.T, id string) ledger.Remediation {
	t.Helper()
	r, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lastAudit is the last line of id's audit trail.
func (e *reviewEnv) lastAudit(t *testing.T, id string) ledger.AuditEntry {
	t.Helper()
	r := e.remediation(t, id)
	if len(r.Audit) == 0 {
		t.Fatalf("%s has no audit trail", id)
	}
	return r.Audit[len(r.Audit)-1]
}

// decided reports whether a remediation left pending_review by an approval: the
// service moves it on to submitted once the dispatcher has it.
func decided(s ledger.State) bool { return s == ledger.Approved || s == ledger.Submitted }

// TestReviewCommands drives `autofix review` against a running serve. The parts share
// the service (starting it is most of the time); each works on remediations of its
// own namespace.
func TestReviewCommands(t *testing.T) {
	e := startReviewService(t)
	t.Run("lists the fixes waiting for review", func(t *testing.T) { testReviewList(t, e) })
	t.Run("shows one", func(t *testing.T) { testReviewShow(t, e) })
	t.Run("approves", func(t *testing.T) { testReviewApprove(t, e) })
	t.Run("rejects with a reason", func(t *testing.T) { testReviewReject(t, e) })
	t.Run("a missing remediation", func(t *testing.T) { testReviewNotFound(t, e) })
	t.Run("refuses a viewer's approval", func(t *testing.T) { testReviewViewer(t, e) })
	t.Run("a wrong token or none", func(t *testing.T) { testReviewBadToken(t, e) })
	t.Run("token precedence", func(t *testing.T) { testReviewTokenPrecedence(t, e) })
	t.Run("TLS", func(t *testing.T) { testReviewTLS(t, e) })
	t.Run("never prints a token", func(t *testing.T) { testReviewNoTokenLeak(t, e) })
	t.Run("sanitizes what the server sends", func(t *testing.T) { testReviewSanitizes(t, e) })
}

// rowOf is the table row of stdout that starts with id, split into its cells.
func rowOf(stdout, id string) []string {
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == id {
			return f
		}
	}
	return nil
}
