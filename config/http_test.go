package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a self-signed certificate and its key into dir as name.crt and
// name.key and returns their paths.
func writePair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSAndSecureCookies(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePair(t, dir, "a")
	otherCert, otherKey := writePair(t, dir, "b")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	on, off := true, false
	tests := []struct {
		name       string
		tls        TLS
		secure     *bool
		wantErr    string // "" for valid
		wantSecure bool
	}{
		{"no TLS", TLS{}, nil, "", false},
		{"no TLS, cookies set", TLS{}, &on, "", true},
		{"TLS", TLS{CertFile: cert, KeyFile: key}, nil, "", true},
		{"TLS, cookies turned off", TLS{CertFile: cert, KeyFile: key}, &off, "", false},
		{"key missing", TLS{CertFile: cert}, nil, "http.tls.keyFile: required", false},
		{"certificate missing", TLS{KeyFile: key}, nil, "http.tls.certFile: required", false},
		{"no such certificate", TLS{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: key}, nil, "http.tls.certFile: open", false},
		{"no such key", TLS{CertFile: cert, KeyFile: filepath.Join(dir, "nope.key")}, nil, "http.tls.keyFile: open", false},
		{"certificate not PEM", TLS{CertFile: garbage, KeyFile: key}, nil, "http.tls.certFile: " + garbage + " holds no PEM certificate", false},
		{"key not PEM", TLS{CertFile: cert, KeyFile: garbage}, nil, "http.tls.keyFile: " + garbage + " is not the key", false},
		{"key of another certificate", TLS{CertFile: cert, KeyFile: otherKey}, nil, "http.tls.keyFile: " + otherKey + " is not the key", false},
		{"the other pair", TLS{CertFile: otherCert, KeyFile: otherKey}, nil, "", true},
		{"the key as the certificate", TLS{CertFile: key, KeyFile: key}, nil, "http.tls.certFile: " + key + " holds no PEM certificate", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.HTTP.TLS, c.HTTP.SecureCookies = tt.tls, tt.secure
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error starting %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && c.HTTP.CookiesSecure() != tt.wantSecure {
				t.Errorf("CookiesSecure() = %v, want %v", c.HTTP.CookiesSecure(), tt.wantSecure)
			}
		})
	}
}

func TestTrustedProxies(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{nil, []string{}, ""},
		{[]string{"10.0.0.0/8", " 192.168.1.7 ", "fd00::/8", "10.1.2.3/16"}, []string{"10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "10.1.0.0/16"}, ""},
		{[]string{"::ffff:10.0.0.0/104"}, []string{"10.0.0.0/8"}, ""},
		{[]string{"10.0.0.0/8", "ingress"}, nil, `http.trustedProxies[1]: "ingress" is not a CIDR`},
		{[]string{"10.0.0.0/33"}, nil, "http.trustedProxies[0]:"},
		{[]string{"fe80::1%eth0"}, nil, "http.trustedProxies[0]:"},
	}
	for _, tt := range tests {
		h := Default().HTTP
		h.TrustedProxies = tt.in
		got, err := h.Proxies()
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("Proxies(%q) = %v, want an error starting %q", tt.in, err, tt.wantErr)
			}
			c := Default()
			c.HTTP.TrustedProxies = tt.in
			if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("Validate() with trustedProxies %q = %v, want an error starting %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Proxies(%q) = %v", tt.in, err)
			continue
		}
		var gotS []string
		for _, p := range got {
			gotS = append(gotS, p.String())
		}
		if strings.Join(gotS, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Proxies(%q) = %v, want %v", tt.in, gotS, tt.want)
		}
	}
}
