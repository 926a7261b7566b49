package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPair is a self-signed certificate for localhost and its key, in PEM.
type testPair struct {
	name         string
	cert         *x509.Certificate
	certPEM, key []byte
}

func newPair(t *testing.T, name string) testPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testPair{name: name, cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
}

// replace writes data to path as a rotation does: a new file renamed over the old.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// install writes p to certFile and keyFile, the certificate first.
func (p testPair) install(t *testing.T, certFile, keyFile string) {
	t.Helper()
	replace(t, certFile, p.certPEM)
	replace(t, keyFile, p.key)
}

// logRecords keeps the messages of a slog handler's records.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }
func (l *logRecords) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds; the deadline only ends a test that would
// otherwise hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServesTLSAndReloadsTheCertificate runs the server on a real TLS listener,
// rotates its certificate files and sees the next handshakes get the new
// certificate, without a restart; a broken new pair keeps the old one, logged.
func TestServesTLSAndReloadsTheCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	a, b, c := newPair(t, "a"), newPair(t, "b"), newPair(t, "c")
	a.install(t, certFile, keyFile)
	logs := &logRecords{}
	cert, err := LoadCertificate(certFile, keyFile, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	o := newEnv(t).opts
	o.Certificate, o.Log = cert, slog.New(logs)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer("127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(srv, ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	})
	addr := ln.Addr().String()
	roots := x509.NewCertPool()
	for _, p := range []testPair{a, b, c} {
		roots.AddCert(p.cert)
	}
	// served is the common name of the certificate a new handshake gets.
	servedName := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := servedName(); got != "a" {
		t.Fatalf("first handshake: certificate %q, want a", got)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("GET /healthz over TLS: %d, Strict-Transport-Security %q; want 200 and HSTS", resp.StatusCode,
			resp.Header.Get("Strict-Transport-Security"))
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil { // #nosec G107 -- the test's own server
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the TLS listener: 200, want a refusal")
		}
	}

	b.install(t, certFile, keyFile)
	eventually(t, "the rotated certificate b served", func() bool { return servedName() == "b" })
	if logs.count("TLS certificate reloaded") == 0 {
		t.Error("no log of the reload")
	}

	// A broken pair (c's certificate with b's key) keeps b in use, and is logged.
	broken := logs.count("cannot be loaded") // b's own install may have been seen half done
	replace(t, certFile, c.certPEM)
	eventually(t, "the broken pair logged", func() bool {
		_ = servedName()
		return logs.count("cannot be loaded") > broken
	})
	if got := servedName(); got != "b" {
		t.Errorf("after a broken pair: certificate %q, want b kept", got)
	}
	replace(t, keyFile, c.key) // the pair complete
	eventually(t, "certificate c served once its key is there", func() bool { return servedName() == "c" })
}

func TestLoadCertificateErrors(t *testing.T) {
	dir := t.TempDir()
	a, b := newPair(t, "a"), newPair(t, "b")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	replace(t, certFile, a.certPEM)
	replace(t, keyFile, b.key)
	for _, tt := range []struct {
		name, cert, key, want string
	}{
		{"no certificate file", filepath.Join(dir, "none.crt"), keyFile, "none.crt"},
		{"no key file", certFile, filepath.Join(dir, "none.key"), "none.key"},
		{"not a pair", certFile, keyFile, "private key does not match public key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadCertificate(tt.cert, tt.key, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadCertificate(%s, %s) = %v, want an error containing %q", tt.cert, tt.key, err, tt.want)
			}
		})
	}
}
