package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/autofix/autofix/internal/testwait"
)

func TestNewSASL(t *testing.T) {
	tests := []struct {
		mechanism, user string
		wantErr         string // "" for success
	}{
		{SASLPlain, "autofix", ""},
		{SASLScramSHA256, "autofix", ""},
		{SASLScramSHA512, "autofix", ""},
		{"plain", "autofix", `mechanism "plain"`},
		{"GSSAPI", "autofix", `mechanism "GSSAPI"`},
		{SASLPlain, "", "no user name"},
	}
	for _, tt := range tests {
		m, err := NewSASL(tt.mechanism, tt.user, "s3cret")
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("NewSASL(%q, %q) = %v, want a mechanism", tt.mechanism, tt.user, err)
		case tt.wantErr == "" && m.Name() != tt.mechanism:
			t.Errorf("NewSASL(%q, %q).Name() = %q, want %q", tt.mechanism, tt.user, m.Name(), tt.mechanism)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("NewSASL(%q, %q) = %v, want an error containing %q", tt.mechanism, tt.user, err, tt.wantErr)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("NewSASL(%q, %q) = %v, which shows the password", tt.mechanism, tt.user, err)
		}
	}
}

func TestExplain(t *testing.T) {
	tests := []struct {
		err  error
		want string // "" when the error is left as it is
	}{
		{fmt.Errorf("dial: %w", kafka.SASLAuthenticationFailed), "refused the SASL user name or password"},
		{kafka.UnsupportedSASLMechanism, "does not offer this SASL mechanism"},
		{fmt.Errorf("read: %w", io.EOF), "do TLS and SASL match its listener?"},
		{io.ErrUnexpectedEOF, "do TLS and SASL match its listener?"},
		{errors.New("connection refused"), ""},
	}
	for _, tt := range tests {
		got := explain(tt.err)
		if !errors.Is(got, tt.err) {
			t.Errorf("explain(%v) = %v, which does not wrap it", tt.err, got)
		}
		if tt.want == "" && got.Error() != tt.err.Error() || !strings.Contains(got.Error(), tt.want) {
			t.Errorf("explain(%v) = %v, want it with %q", tt.err, got, tt.want)
		}
	}
}

// TestReachableGivesUpOnASilentBroker: with SASL, kafka-go's Dialer sends ApiVersions
// and the SASL handshake without a deadline, so a broker that accepts connections
// and never answers would hold Reachable, and with it the health probe, for ever.
func TestReachableGivesUpOnASilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		for c := range accepted {
			_ = c.Close()
		}
	})
	sec := Security{SASL: mustSASL(t, SASLScramSHA256, "autofix", "s3cret").SASL}
	done := make(chan error, 1)
	go func() {
		done <- Reachable(context.Background(), []string{ln.Addr().String()}, sec, 50*time.Millisecond)
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Reachable() = %v, want context.DeadlineExceeded", err)
		}
	case <-testwait.Context(t).Done():
		t.Fatal("Reachable() has not returned: the SASL exchange is not bounded by its timeout")
	}
}

func TestStartBrokerRefusesBadSecurity(t *testing.T) {
	tests := []struct {
		name string
		o    BrokerOptions
		want string
	}{
		{"TLS without a certificate", BrokerOptions{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, "TLS without a certificate"},
		{"unknown mechanism", BrokerOptions{Users: []User{{"GSSAPI", "u", "p"}}}, `mechanism "GSSAPI"`},
		{"no password", BrokerOptions{Users: []User{{SASLPlain, "u", ""}}}, "a user name and a password are required"},
	}
	for _, tt := range tests {
		tt.o.Addr = "127.0.0.1:0"
		b, err := StartBroker(tt.o)
		if err == nil {
			b.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: StartBroker() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
