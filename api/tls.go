package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often, at most, a Certificate looks at its files for a
// change: two stat calls, on the handshake that comes due.
const certCheckEvery = time.Second

// Certificate is the server's TLS certificate, read from a PEM certificate chain
// and a PEM key and read again when either file changes (its modification time,
// size or identity: a Kubernetes Secret volume swaps a symbolic link), so that a
// rotated certificate is served from the next handshake on without a restart. A new
// pair that cannot be loaded (half written, or a key of another certificate) leaves
// the old one in use and is logged; it is tried again when the files change again.
// It is safe for concurrent use.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    pairState // the files as they were when last loaded or tried
	checked time.Time
}

// pairState is what a Certificate notices of its two files.
type pairState struct{ cert, key os.FileInfo }

func statPair(certFile, keyFile string) (pairState, error) {
	c, err := os.Stat(certFile)
	if err != nil {
		return pairState{}, err
	}
	k, err := os.Stat(keyFile)
	if err != nil {
		return pairState{}, err
	}
	return pairState{cert: c, key: k}, nil
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

func (p pairState) same(q pairState) bool { return sameFile(p.cert, q.cert) && sameFile(p.key, q.key) }

// LoadCertificate reads the pair; an error names the file at fault. log (nil: none)
// hears of reloads and of pairs that could not be loaded.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	st, err := statPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cert, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.cert, c.seen, c.checked = cert, st, c.now()
	return c, nil
}

func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s, key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: certificate %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// GetCertificate is the tls.Config hook: the current certificate, reloaded first if
// the files changed since they were last looked at (at most once a second).
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= certCheckEvery || now.Before(c.checked) {
		c.checked = now
		c.reload()
	}
	return c.cert, nil
}

// reload loads the pair if the files changed; the caller holds mu. The files are
// looked at before they are read, so a change made while they are read is seen by
// the next check.
func (c *Certificate) reload() {
	st, err := statPair(c.certFile, c.keyFile)
	if err != nil {
		if c.seen.cert != nil { // say it once, not on every check
			c.log.Error("TLS certificate files cannot be read; serving the old certificate", "err", err)
			c.seen = pairState{}
		}
		return
	}
	if st.same(c.seen) {
		return
	}
	c.seen = st
	cert, err := loadPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Error("TLS certificate changed but cannot be loaded; serving the old certificate until the files change again", "err", err)
		return
	}
	c.cert = cert
	c.log.Info("TLS certificate reloaded", "file", c.certFile, "subject", cert.Leaf.Subject.String(),
		"notAfter", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// tlsConfig is the listener's TLS configuration: TLS 1.2 at least, the certificate
// from c.
func (c *Certificate) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}
