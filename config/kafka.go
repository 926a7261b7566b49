package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/autofix/autofix/internal/boundedfile"
)

// KafkaTLS configures TLS to the brokers of kafka.brokers.
type KafkaTLS struct {
	// Enabled turns TLS on. The other fields are errors without it, so that a
	// half-written section never leaves the connection in plaintext unnoticed.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates; empty
	// trusts the system's roots. Read once, at start.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are a client certificate and its key in PEM, for brokers
	// that authenticate clients by certificate (both or neither). They are read
	// again for each new connection when they changed, so a rotated certificate is
	// used without a restart.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName is the name the brokers' certificates must carry; empty: the host
	// of each broker's address.
	ServerName string `yaml:"serverName"`
	// InsecureSkipVerify accepts any certificate from anyone who answers at a
	// broker's address: the connection is encrypted but not authenticated, so a
	// man in the middle reads and writes the topic (SASL PLAIN passwords included).
	// For a test cluster only; never in production. Default false.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
}

// KafkaSASL configures SASL authentication to the brokers of kafka.brokers.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty turns SASL off.
	// PLAIN sends the password as it is: use it inside TLS only.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// PasswordFile holds the password (one trailing newline is dropped), e.g. a
	// mounted Kubernetes Secret. There is no password field: a password is never
	// written in the configuration.
	PasswordFile string `yaml:"passwordFile"`
	// Password is set from AUTOFIX_KAFKA_SASL_PASSWORD, and then wins over
	// PasswordFile. It prints as "[redacted]".
	Password Secret `yaml:"-"`
}

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Secret is a string that fmt, slog, JSON and YAML show as "[redacted]". Convert
// it to a string to use it.
type Secret string

const redacted = "[redacted]"

// String redacts the secret.
func (Secret) String() string { return redacted }

// GoString redacts the secret for %#v.
func (Secret) GoString() string { return redacted }

// LogValue redacts the secret in slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText redacts the secret in JSON, YAML and other text encodings.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// validateSecurity checks kafka.tls and kafka.sasl, reading the files they name.
func (k *Kafka) validateSecurity() error {
	t, s := &k.TLS, &k.SASL
	if len(k.Brokers) == 0 {
		switch {
		case t.Enabled:
			return errors.New("kafka.tls.enabled: applies to kafka.brokers; the embedded broker (no kafka.brokers) listens without TLS")
		case s.Mechanism != "":
			return errors.New("kafka.sasl.mechanism: applies to kafka.brokers; the embedded broker (no kafka.brokers) has no SASL")
		}
	}
	if !t.Enabled {
		for _, f := range []struct{ name, value string }{{"caFile", t.CAFile}, {"certFile", t.CertFile},
			{"keyFile", t.KeyFile}, {"serverName", t.ServerName}} {
			if f.value != "" {
				return fmt.Errorf("kafka.tls.%s: set, but kafka.tls.enabled is false", f.name)
			}
		}
		if t.InsecureSkipVerify {
			return errors.New("kafka.tls.insecureSkipVerify: set, but kafka.tls.enabled is false")
		}
	} else if _, err := t.ClientConfig(); err != nil {
		return err
	}
	if s.Mechanism == "" {
		switch {
		case s.Username != "":
			return errors.New("kafka.sasl.username: set, but kafka.sasl.mechanism is empty")
		case s.PasswordFile != "":
			return errors.New("kafka.sasl.passwordFile: set, but kafka.sasl.mechanism is empty")
		case s.Password != "":
			return errors.New("AUTOFIX_KAFKA_SASL_PASSWORD: set, but kafka.sasl.mechanism is empty")
		}
		return nil
	}
	switch s.Mechanism {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("kafka.sasl.mechanism: %q, want %s, %s or %s", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if s.Username == "" {
		return errors.New("kafka.sasl.username: required with kafka.sasl.mechanism")
	}
	_, err := s.ReadPassword()
	return err
}

// Bounds on the files the configuration names and the service reads, again while it
// runs for some (a client certificate at each handshake, a rotated password): only
// regular files of at most these sizes, so that a FIFO or a device named by mistake
// cannot hold a connection, nor a huge file fill memory.
const (
	maxSecretBytes = 64 << 10 // a password or a token: one line
	maxPEMBytes    = 1 << 20  // a certificate chain, a key or a CA bundle
)

// ReadPassword returns the SASL password: AUTOFIX_KAFKA_SASL_PASSWORD's value if it
// was set, else the content of PasswordFile without its trailing newline. Errors
// name the field, never the password.
func (s *KafkaSASL) ReadPassword() (string, error) {
	if s.Password != "" {
		return string(s.Password), nil
	}
	if s.PasswordFile == "" {
		return "", errors.New("kafka.sasl.passwordFile: required with kafka.sasl.mechanism (or AUTOFIX_KAFKA_SASL_PASSWORD)")
	}
	b, err := boundedfile.Read(s.PasswordFile, maxSecretBytes)
	if err != nil {
		return "", fmt.Errorf("kafka.sasl.passwordFile: %w", err)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return "", fmt.Errorf("kafka.sasl.passwordFile: %s is empty", s.PasswordFile)
	}
	return p, nil
}

// ClientConfig returns the TLS configuration of the clients of kafka.brokers, or
// nil when TLS is off. It reads CAFile, and CertFile and KeyFile (read again later,
// whenever they change); errors name the field.
func (t *KafkaTLS) ClientConfig() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	return clientTLS("kafka.tls", t.CAFile, t.CertFile, t.KeyFile, t.ServerName, t.InsecureSkipVerify)
}

// clientTLS is the TLS configuration of a client: the CAs of caFile (the system's
// roots if empty), the client certificate of certFile and keyFile (both or neither;
// read again whenever they change), serverName. Errors name the fields under
// prefix.
func clientTLS(prefix, caFile, certFile, keyFile, serverName string, insecureSkipVerify bool) (*tls.Config, error) {
	if insecureSkipVerify && (caFile != "" || serverName != "") {
		return nil, fmt.Errorf("%[1]s.insecureSkipVerify: verifies nothing, so %[1]s.caFile and %[1]s.serverName would be ignored; unset one or the other", prefix)
	}
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// #nosec G402 -- the operator's explicit choice, off by default and documented as unsafe
		InsecureSkipVerify: insecureSkipVerify,
	}
	if caFile != "" {
		pem, err := boundedfile.Read(caFile, maxPEMBytes)
		if err != nil {
			return nil, fmt.Errorf("%s.caFile: %w", prefix, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.caFile: no PEM certificate in %s", prefix, caFile)
		}
	}
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "":
		return nil, fmt.Errorf("%[1]s.certFile: required with %[1]s.keyFile", prefix)
	case keyFile == "":
		return nil, fmt.Errorf("%[1]s.keyFile: required with %[1]s.certFile", prefix)
	default:
		kp := &keyPair{prefix: prefix, certFile: certFile, keyFile: keyFile}
		if _, err := kp.load(); err != nil {
			return nil, err
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.load() }
	}
	return c, nil
}

// keyPair is a client certificate read from its files, again whenever they change.
type keyPair struct {
	prefix            string // of the fields in errors: kafka.tls
	certFile, keyFile string

	mu              sync.Mutex
	certPEM, keyPEM []byte
	cert            *tls.Certificate
}

func (k *keyPair) load() (*tls.Certificate, error) {
	certPEM, err := boundedfile.Read(k.certFile, maxPEMBytes)
	if err != nil {
		return nil, fmt.Errorf("%s.certFile: %w", k.prefix, err)
	}
	keyPEM, err := boundedfile.Read(k.keyFile, maxPEMBytes)
	if err != nil {
		return nil, fmt.Errorf("%s.keyFile: %w", k.prefix, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && bytes.Equal(certPEM, k.certPEM) && bytes.Equal(keyPEM, k.keyPEM) {
		return k.cert, nil
	}
	// tls.X509KeyPair's errors describe the PEM blocks, never the key's bytes.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%[1]s.certFile, %[1]s.keyFile: %[2]w", k.prefix, err)
	}
	k.certPEM, k.keyPEM, k.cert = certPEM, keyPEM, &cert
	return k.cert, nil
}
