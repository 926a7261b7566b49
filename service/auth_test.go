package service

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
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/review"
)

// TestTokenSourcesRevoke: the Secret's tokens go when it is deleted, and when it has
// been unreadable for too long — whatever the token file does.
func TestTokenSourcesRevoke(t *testing.T) {
	dir := t.TempDir()
	store, err := auth.OpenStore(filepath.Join(dir, auth.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create("local", auth.Viewer); err != nil {
		t.Fatal(err)
	}
	fromSecret := []auth.Token{{Name: "oncall", Role: auth.Approver, Hash: "00"}}
	var secretErr error
	src := &tokenSources{path: filepath.Join(dir, auth.StoreFile), log: slog.New(slog.DiscardHandler),
		secret: func(context.Context) ([]auth.Token, error) { return fromSecret, secretErr }}
	ctx := context.Background()
	names := func() []string {
		var out []string
		for _, tk := range src.tokens() {
			out = append(out, tk.Name)
		}
		return out
	}
	if err := src.reload(ctx, true); err != nil || len(names()) != 2 {
		t.Fatalf("first load: %v, %v", names(), err)
	}
	secretErr = errors.New("apiserver down")
	_ = src.reload(ctx, false)
	if len(names()) != 2 {
		t.Errorf("a Secret briefly unreadable: %v, want its tokens kept", names())
	}
	src.secretReadAt = time.Now().Add(-2 * staleTokens)
	_ = src.reload(ctx, false)
	if got := names(); len(got) != 1 || got[0] != "local" {
		t.Errorf("a Secret unreadable for too long: %v, want only the file's", got)
	}
	secretErr = nil
	_ = src.reload(ctx, false)
	secretErr = apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "autofix-tokens")
	_ = src.reload(ctx, false)
	if got := names(); len(got) != 1 || got[0] != "local" {
		t.Errorf("a deleted Secret: %v, want only the file's", got)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key into dir and
// returns the files and the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "autofix"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// TestAPIServerOverTLS: with http.tls set, serve's API answers over HTTPS only and
// the review page's session cookie is Secure without secureCookies being set.
func TestAPIServerOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := selfSigned(t, dir)
	cfg := config.Default()
	cfg.HTTP.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	cfg.HTTP.TrustedProxies = []string{"10.0.0.0/8"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := auth.OpenStore(filepath.Join(dir, auth.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := store.Create("oncall", auth.Viewer)
	if err != nil {
		t.Fatal(err)
	}
	ledgerStore, err := ledger.Open(t.Context(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ledgerStore.Close() }()
	br, err := newBrain(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	reviews, err := review.New(review.Options{Ledger: ledgerStore, Policy: &cfg.Policy, Catalogue: cfg.Catalogue})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newAPIServer(&cfg, api.Options{Ledger: ledgerStore, Review: reviews, Recommender: br.rec, Classifier: br.classifier,
		Models: br.models, Auth: auth.NewAuthenticator(store.Tokens()), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer("127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(srv, ln) }()
	defer func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := "https://" + ln.Addr().String()
	resp, err := client.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz over TLS: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz over TLS: %d, want 200", resp.StatusCode)
	}
	resp, err = client.PostForm(base+"/ui/login", url.Values{"token": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "autofix_session" {
			session = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil || !session.Secure {
		t.Errorf("login over TLS: %d, cookie %v; want a redirect and a Secure session cookie", resp.StatusCode, session)
	}
}
