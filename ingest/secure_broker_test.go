package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/autofix/autofix/internal/testpki"
	"github.com/autofix/autofix/internal/testwait"
)

// These tests run the embedded broker with TLS and SASL turned on and go through the
// producer, the consumer, EnsureTopics and Reachable as serve does. Nothing is timed:
// waits last as long as the test may run (see testwait).

// pki is a CA with a server certificate for loopback and a client certificate.
type pki struct {
	ca             *testpki.CA
	server, client *testpki.Leaf
}

func newPKI(t *testing.T) *pki {
	ca := testpki.NewCA(t, "kafka")
	return &pki{ca: ca, server: ca.Server(t, "broker"), client: ca.Client(t, "autofix")}
}

// serverTLS is the broker's side; with clientCerts it requires a client certificate
// signed by the CA.
func (p *pki) serverTLS(clientCerts bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server.TLS}, MinVersion: tls.VersionTLS12}
	if clientCerts {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, p.ca.Pool()
	}
	return c
}

// clientTLS trusts the CA, optionally presenting the client certificate.
func (p *pki) clientTLS(clientCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS12}
	if clientCert {
		c.Certificates = []tls.Certificate{p.client.TLS}
	}
	return c
}

func startSecureBroker(t *testing.T, serverTLS *tls.Config, users ...User) []string {
	t.Helper()
	b, err := StartBroker(BrokerOptions{Addr: "127.0.0.1:0", SessionTimeoutMin: time.Second, TLS: serverTLS, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return []string{b.Addr()}
}

// secureNames returns topic and group names unique to the test.
func secureNames(t *testing.T) (topic, dlq, group string) {
	base := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return base, base + ".dlq", base + "-group"
}

func mustSASL(t *testing.T, mechanism, user, password string) Security {
	t.Helper()
	m, err := NewSASL(mechanism, user, password)
	if err != nil {
		t.Fatal(err)
	}
	return Security{SASL: m}
}

// collector is a Handler that keeps the values it is handed and dead-letters "poison".
type collector struct {
	mu  sync.Mutex
	got map[string]bool
}

func (c *collector) Handle(_ context.Context, batch []Message) ([]Rejection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rejected []Rejection
	for i, m := range batch {
		if string(m.Value) == "poison" {
			rejected = append(rejected, Rejection{Index: i, Reason: "poison"})
			continue
		}
		c.got[string(m.Value)] = true
	}
	return rejected, nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// roundTrip checks, connecting with sec, that the broker is reachable, the topics can
// be created, and that what is published is consumed, with a rejected message
// dead-lettered.
func roundTrip(t *testing.T, brokers []string, sec Security) {
	t.Helper()
	ctx := testwait.Context(t)
	if err := Reachable(ctx, brokers, sec, testwait.Timeout(t)); err != nil {
		t.Fatalf("Reachable() = %v", err)
	}
	topic, dlq, group := secureNames(t)
	if err := EnsureTopics(ctx, brokers, sec, Topic{Name: topic, Partitions: 2}, Topic{Name: dlq, Partitions: 1}); err != nil {
		t.Fatalf("EnsureTopics() = %v", err)
	}
	p, err := NewProducer(ProducerOptions{Brokers: brokers, Security: sec, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	msgs := []Message{{Value: []byte("poison")}}
	for i := range n {
		msgs = append(msgs, Message{Key: []byte(fmt.Sprint("job-", i%3)), Value: []byte(fmt.Sprint(i))})
	}
	if err := p.Publish(ctx, msgs...); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Producer.Close() = %v", err)
	}
	c, err := NewConsumer(ConsumerOptions{Brokers: brokers, Security: sec, Topic: topic, GroupID: group, DeadLetterTopic: dlq,
		SessionTimeout: testSession, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := &collector{got: map[string]bool{}}
	runUntil(t, c, h, fmt.Sprintf("%d messages consumed and one dead-lettered", n), func() bool {
		return h.count() >= n && c.Stats().DeadLettered >= 1
	})
	if got, dead := h.count(), c.Stats().DeadLettered; got != n || dead != 1 {
		t.Errorf("consumed %d and dead-lettered %d, want %d and 1", got, dead, n)
	}
}

func TestSecureBrokerRoundTrip(t *testing.T) {
	p := newPKI(t)
	const user, password = "autofix", "s3cret=,pass"
	tests := []struct {
		name      string
		serverTLS *tls.Config
		users     []User
		client    Security
	}{
		{"SASL_SSL PLAIN", p.serverTLS(false), []User{{SASLPlain, user, password}},
			Security{TLS: p.clientTLS(false), SASL: mustSASL(t, SASLPlain, user, password).SASL}},
		{"SASL_SSL SCRAM-SHA-256", p.serverTLS(false), []User{{SASLScramSHA256, user, password}},
			Security{TLS: p.clientTLS(false), SASL: mustSASL(t, SASLScramSHA256, user, password).SASL}},
		{"SASL_SSL SCRAM-SHA-512", p.serverTLS(false), []User{{SASLScramSHA512, user, password}},
			Security{TLS: p.clientTLS(false), SASL: mustSASL(t, SASLScramSHA512, user, password).SASL}},
		{"SASL_PLAINTEXT SCRAM-SHA-512", nil, []User{{SASLScramSHA512, user, password}},
			mustSASL(t, SASLScramSHA512, user, password)},
		{"SSL with a client certificate", p.serverTLS(true), nil, Security{TLS: p.clientTLS(true)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roundTrip(t, startSecureBroker(t, tt.serverTLS, tt.users...), tt.client)
		})
	}
}

// TestSecureBrokerRefuses connects to brokers with TLS and SASL with what is wrong in
// each case: the connection fails, and the error says why where it can.
func TestSecureBrokerRefuses(t *testing.T) {
	p := newPKI(t)
	other := testpki.NewCA(t, "other")
	const user, password = "autofix", "s3cret"
	saslSSL := startSecureBroker(t, p.serverTLS(false), User{SASLScramSHA512, user, password})
	saslPlaintext := startSecureBroker(t, nil, User{SASLScramSHA512, user, password})
	mTLS := startSecureBroker(t, p.serverTLS(true))
	right := Security{TLS: p.clientTLS(false), SASL: mustSASL(t, SASLScramSHA512, user, password).SASL}
	with := func(tc *tls.Config, s Security) Security { s.TLS = tc; return s }
	isAuthFailure := func(err error) string {
		if !errors.Is(err, kafka.SASLAuthenticationFailed) || !strings.Contains(err.Error(), "refused the SASL user name or password") {
			return "kafka.SASLAuthenticationFailed, explained"
		}
		return ""
	}
	isAs := func(target any, what string) func(error) string {
		return func(err error) string {
			if !errors.As(err, target) {
				return what
			}
			return ""
		}
	}
	anyError := func(error) string { return "" }
	mismatch := func(err error) string {
		if !strings.Contains(err.Error(), "do TLS and SASL match its listener?") {
			return "the hint that TLS or SASL do not match"
		}
		return ""
	}
	tests := []struct {
		name    string
		brokers []string
		client  Security
		want    func(error) string // what is missing from the error, "" if nothing
	}{
		{"wrong password", saslSSL, with(right.TLS, mustSASL(t, SASLScramSHA512, user, "guess")), isAuthFailure},
		{"unknown user", saslSSL, with(right.TLS, mustSASL(t, SASLScramSHA512, "mallory", password)), isAuthFailure},
		{"another mechanism", saslSSL, with(right.TLS, mustSASL(t, SASLScramSHA256, user, password)), isAuthFailure},
		{"PLAIN for a SCRAM user", saslSSL, with(right.TLS, mustSASL(t, SASLPlain, user, password)), isAuthFailure},
		{"no SASL", saslSSL, Security{TLS: right.TLS}, mismatch},
		{"plaintext client, TLS listener", saslSSL, Security{SASL: right.SASL}, mismatch},
		{"untrusted CA", saslSSL, with(&tls.Config{RootCAs: other.Pool(), MinVersion: tls.VersionTLS12}, right),
			isAs(new(x509.UnknownAuthorityError), "x509.UnknownAuthorityError")},
		{"wrong server name", saslSSL, with(&tls.Config{RootCAs: p.ca.Pool(), ServerName: "kafka.example", MinVersion: tls.VersionTLS12}, right),
			isAs(new(x509.HostnameError), "x509.HostnameError")},
		{"no client certificate", mTLS, Security{TLS: p.clientTLS(false)}, anyError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Reachable(testwait.Context(t), tt.brokers, tt.client, testwait.Timeout(t))
			if err == nil {
				t.Fatal("Reachable() = nil, want an error")
			}
			t.Logf("Reachable() = %v", err)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Reachable() = %v, want a refusal, not a timeout", err)
			}
			if missing := tt.want(err); missing != "" {
				t.Errorf("Reachable() = %v, want %s", err, missing)
			}
		})
	}
	// A TLS client of a plaintext listener: the broker never answers (kfake waits for
	// the 369 MB "request" a ClientHello announces; Kafka refuses it at once), so the
	// timeout ends it (on a slow machine, sooner in the exchange: an error either way).
	if err := Reachable(context.Background(), saslPlaintext, right, 100*time.Millisecond); err == nil {
		t.Error("Reachable() of a plaintext listener with TLS = nil, want an error")
	}
	// The same brokers take the right clients.
	for _, b := range []struct {
		brokers []string
		client  Security
	}{{saslSSL, right}, {saslPlaintext, Security{SASL: right.SASL}}, {mTLS, Security{TLS: p.clientTLS(true)}}} {
		if err := Reachable(testwait.Context(t), b.brokers, b.client, testwait.Timeout(t)); err != nil {
			t.Errorf("Reachable(%v) with the right client = %v", b.brokers, err)
		}
	}
}

// TestWrongPasswordEverywhere checks that each client of the brokers fails on a wrong
// password and says so: EnsureTopics, the producer and the consumer.
func TestWrongPasswordEverywhere(t *testing.T) {
	p := newPKI(t)
	brokers := startSecureBroker(t, p.serverTLS(false), User{SASLScramSHA256, "autofix", "s3cret"})
	right := Security{TLS: p.clientTLS(false), SASL: mustSASL(t, SASLScramSHA256, "autofix", "s3cret").SASL}
	wrong := Security{TLS: right.TLS, SASL: mustSASL(t, SASLScramSHA256, "autofix", "guess").SASL}
	ctx := testwait.Context(t)
	topic, dlq, group := secureNames(t)

	err := EnsureTopics(ctx, brokers, wrong, Topic{Name: topic, Partitions: 1}, Topic{Name: dlq, Partitions: 1})
	if !errors.Is(err, kafka.SASLAuthenticationFailed) {
		t.Errorf("EnsureTopics() = %v, want kafka.SASLAuthenticationFailed", err)
	}
	if err := EnsureTopics(ctx, brokers, right, Topic{Name: topic, Partitions: 1}, Topic{Name: dlq, Partitions: 1}); err != nil {
		t.Fatalf("EnsureTopics() with the right password = %v", err)
	}

	prod, err := NewProducer(ProducerOptions{Brokers: brokers, Security: wrong, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	err = prod.Publish(ctx, Message{Value: []byte("x")})
	_ = prod.Close()
	t.Logf("Publish() = %v", err)
	if !errors.Is(err, kafka.SASLAuthenticationFailed) || !strings.Contains(err.Error(), "refused the SASL user name or password") {
		t.Errorf("Publish() = %v, want kafka.SASLAuthenticationFailed, explained", err)
	}

	// The consumer keeps trying (the password may be fixed under it) and says why in
	// its log; its Handler is never called.
	var logs syncBuffer
	c, err := NewConsumer(ConsumerOptions{Brokers: brokers, Security: wrong, Topic: topic, GroupID: group, DeadLetterTopic: dlq,
		Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := &collector{got: map[string]bool{}}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx, h) }()
	reported := testwait.Until(ctx, &logs.changed, func() bool {
		return strings.Contains(logs.String(), kafka.SASLAuthenticationFailed.Error())
	})
	stop()
	if err := <-done; err != nil {
		t.Errorf("Consumer.Run() = %v", err)
	}
	if reported != nil {
		t.Errorf("consumer log does not report the failed authentication (%v):\n%s", reported, logs.String())
	}
	if h.count() != 0 {
		t.Errorf("the Handler was handed %d messages", h.count())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once; changed is
// notified after each write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed testwait.Signal
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	defer s.changed.Notify()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len is how many bytes were written so far.
func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// From is what was written after the first off bytes.
func (s *syncBuffer) From(off int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b.Bytes()[off:])
}
