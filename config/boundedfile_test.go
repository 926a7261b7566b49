package config

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFilesThatCannotBeReadAreRefused: a secret, certificate or key file the
// configuration names that is a FIFO (which would block the read, at start or at a
// reconnection's handshake, until something writes to it) is refused at once, the
// field named.
func TestFilesThatCannotBeReadAreRefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, field string
		read        func() error
	}{
		{"kafka password", "kafka.sasl.passwordFile", func() error {
			_, err := (&KafkaSASL{PasswordFile: fifo}).ReadPassword()
			return err
		}},
		{"kafka CA", "kafka.tls.caFile", func() error {
			_, err := (&KafkaTLS{Enabled: true, CAFile: fifo}).ClientConfig()
			return err
		}},
		{"kafka client certificate", "kafka.tls.certFile", func() error {
			_, err := (&KafkaTLS{Enabled: true, CertFile: fifo, KeyFile: fifo}).ClientConfig()
			return err
		}},
		{"http certificate", "http.tls.certFile", func() error {
			return TLS{CertFile: fifo, KeyFile: fifo}.validate()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.read()
			if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("err = %v, want one naming %s and saying it is not a regular file", err, tc.field)
			}
		})
	}
}
