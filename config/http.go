package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/autofix/autofix/internal/boundedfile"
	"github.com/autofix/autofix/notify"
)

// HTTP configures the HTTP listener.
type HTTP struct {
	Addr string `yaml:"addr"`
	// OpenMetrics serves /metrics without a token (for a scraper inside the cluster's
	// network); by default it needs a viewer token.
	OpenMetrics bool `yaml:"openMetrics"`
	// RatePerSecond and Burst limit each caller (a token; an address before one).
	// Zero: the api package's defaults (50 per second, a burst of 100).
	RatePerSecond float64 `yaml:"ratePerSecond"`
	Burst         int     `yaml:"burst"`
	// RequestTimeout bounds the handling of one request. Zero: the api package's
	// default (15 s).
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// TokensSecret ("namespace/name") is a Kubernetes Secret of API tokens (each key a
	// token's name, its value "<role>:<secret>"), read besides DATA_DIR/tokens.json.
	TokensSecret string `yaml:"tokensSecret"`
	// SecureCookies marks the review page's session cookie Secure. Unset, it is on
	// when the listener serves TLS (TLS below) and off otherwise: set it to true
	// behind a proxy that terminates TLS. See CookiesSecure.
	SecureCookies *bool `yaml:"secureCookies"`
	// SessionKeyFile holds the keys that sign the review page's session cookies: one
	// base64 key of at least 32 random bytes a line (head -c 32 /dev/urandom | base64),
	// the signing key first, the others still accepted (a rotation). Every replica
	// must read the same keys (a Secret); empty: a random key of this process only.
	SessionKeyFile string `yaml:"sessionKeyFile"`
	// TLS makes the listener serve HTTPS.
	TLS TLS `yaml:"tls"`
	// ExternalURL is autofix's address as people's browsers reach it (through an
	// ingress, say), e.g. https://autofix.example.com: the links in alerts open
	// the review page under it. Required with notify.alertmanager.urls.
	ExternalURL string `yaml:"externalURL"`
	// TrustedProxies are the addresses (CIDRs, or single addresses) of the proxies in
	// front of autofix (an ingress, a load balancer) whose X-Forwarded-For it believes:
	// a request from one of them counts as the right-most address of the header that
	// is not a trusted proxy, for the rate limits. Empty (the default): the header is
	// ignored and every caller is the address of its connection.
	TrustedProxies []string `yaml:"trustedProxies"`
}

// TLS is the listener's certificate: both files or neither. The files are
// re-read when they change (a rotated certificate is served without a restart).
type TLS struct {
	// CertFile is the PEM certificate chain, the server's certificate first.
	CertFile string `yaml:"certFile"`
	// KeyFile is the PEM private key of the certificate.
	KeyFile string `yaml:"keyFile"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// CookiesSecure reports whether the session cookie is marked Secure: as set, or, if
// unset, whether the listener serves TLS.
func (h *HTTP) CookiesSecure() bool {
	if h.SecureCookies != nil {
		return *h.SecureCookies
	}
	return h.TLS.Enabled()
}

// Proxies returns TrustedProxies as prefixes (a single address is a prefix of its
// full length); an entry that is neither is an error naming it.
func (h *HTTP) Proxies() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(h.TrustedProxies))
	for i, s := range h.TrustedProxies {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("http.trustedProxies[%d]: %q is not a CIDR (10.0.0.0/8) or an address", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() { // ::ffff:10.0.0.0/104 is 10.0.0.0/8: clients are compared unmapped
			if p.Bits() < 96 {
				return nil, fmt.Errorf("http.trustedProxies[%d]: %q mixes IPv4-mapped and IPv6 addresses", i, s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (h *HTTP) validate() error {
	switch {
	case !(h.RatePerSecond >= 0 && h.RatePerSecond <= 1e6):
		return fmt.Errorf("http.ratePerSecond: %g, want 0 (the default) to 1e6", h.RatePerSecond)
	case h.Burst < 0:
		return fmt.Errorf("http.burst: %d, want 0 (the default) or more", h.Burst)
	case h.RequestTimeout != 0 && h.RequestTimeout < time.Second:
		return fmt.Errorf("http.requestTimeout: %s, want 0 (the default) or at least 1s", h.RequestTimeout)
	case h.TokensSecret != "" && strings.Count(h.TokensSecret, "/") != 1:
		return fmt.Errorf("http.tokensSecret: %q, want namespace/name", h.TokensSecret)
	}
	if err := checkAddr("http.addr", h.Addr); err != nil {
		return err
	}
	if _, err := h.Proxies(); err != nil {
		return err
	}
	if h.ExternalURL != "" {
		if err := notify.CheckURL(h.ExternalURL); err != nil {
			return fmt.Errorf("http.externalURL: %w", err)
		}
	}
	return h.TLS.validate()
}

// validate checks that both files are set, readable, and a certificate and its key.
func (t TLS) validate() error {
	switch {
	case !t.Enabled():
		return nil
	case t.CertFile == "":
		return errors.New("http.tls.certFile: required with http.tls.keyFile")
	case t.KeyFile == "":
		return errors.New("http.tls.keyFile: required with http.tls.certFile")
	}
	certPEM, err := boundedfile.Read(t.CertFile, maxPEMBytes)
	if err != nil {
		return fmt.Errorf("http.tls.certFile: %w", err)
	}
	keyPEM, err := boundedfile.Read(t.KeyFile, maxPEMBytes)
	if err != nil {
		return fmt.Errorf("http.tls.keyFile: %w", err)
	}
	var block *pem.Block
	for rest := certPEM; ; {
		if block, rest = pem.Decode(rest); block == nil || block.Type == "CERTIFICATE" {
			break
		}
	}
	if block == nil {
		return fmt.Errorf("http.tls.certFile: %s holds no PEM certificate", t.CertFile)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("http.tls.certFile: %s: %w", t.CertFile, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		// The certificate parsed: what is wrong is the key, or the two together.
		return fmt.Errorf("http.tls.keyFile: %s is not the key of http.tls.certFile %s: %w", t.KeyFile, t.CertFile, err)
	}
	return nil
}
