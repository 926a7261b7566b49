package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	saslplain "github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms, named as Kafka names them.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Security is how every client of the brokers connects: with TLS, with SASL, both or
// neither. The zero value is plaintext without authentication, which suits the
// embedded broker on loopback and nothing else. Build one at start and give the same
// one to the producers, the consumer, EnsureTopics and Reachable; it is safe for
// concurrent use (its values are only read).
type Security struct {
	// TLS, when not nil, encrypts every connection and verifies the broker with it
	// (RootCAs, or the system's roots when nil). An empty ServerName is the host of
	// the broker's address, as each connection dials it.
	TLS *tls.Config
	// SASL, when not nil, authenticates every connection (inside TLS when both are
	// set) before any other request. NewSASL makes one.
	SASL sasl.Mechanism
}

// NewSASL returns the SASL mechanism named (SASLPlain, SASLScramSHA256 or
// SASLScramSHA512) for the user's credentials. The password stays in the returned
// value; nothing here logs it.
func NewSASL(mechanism, username, password string) (sasl.Mechanism, error) {
	if username == "" {
		return nil, errors.New("sasl: no user name")
	}
	switch mechanism {
	case SASLPlain:
		return saslplain.Mechanism{Username: username, Password: password}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if mechanism == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, username, password)
		if err != nil {
			// The error of xdg-go/scram names what failed SASLprep, not the value.
			return nil, fmt.Errorf("sasl %s: %w", mechanism, err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("sasl: mechanism %q, want %s, %s or %s", mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
}

// dialTimeout bounds connecting to one broker: the TCP connection, the TLS handshake
// and the SASL exchange together.
const dialTimeout = 10 * time.Second

// dialer is for kafka-go's Reader, and under dial for the single connections of
// topicsVisible and Reachable.
func (s Security) dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: dialTimeout, TLS: s.TLS, SASLMechanism: s.SASL}
}

// dial connects to the broker at addr, TLS handshake and SASL exchange included, and
// gives up when ctx ends. kafka-go's Dialer bounds only the TCP connection and the
// TLS handshake by its context, not the requests of the SASL exchange: a broker that
// accepts connections and never answers would hold the caller for ever. The
// returned connection has no deadline.
func (s Security) dial(ctx context.Context, addr string) (*kafka.Conn, error) {
	var (
		mu      sync.Mutex
		raw     net.Conn
		stopped bool
	)
	d := s.dialer()
	d.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			_ = c.Close()
			return nil, context.Cause(ctx)
		}
		raw = c
		return c, nil
	}
	// Ending ctx closes the connection under whatever kafka-go is waiting for.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if raw != nil {
			_ = raw.Close()
		}
	})
	conn, err := d.DialContext(ctx, "tcp", addr)
	if !stop() {
		if conn != nil {
			_ = conn.Close()
		}
		return nil, fmt.Errorf("connect to %s: %w", addr, context.Cause(ctx))
	}
	if err != nil {
		return nil, explain(err)
	}
	return conn, nil
}

// transport is for kafka-go's Writer and Client. Its owner closes it
// (CloseIdleConnections) when done: each one keeps a pool of connections.
func (s Security) transport() *kafka.Transport {
	return &kafka.Transport{DialTimeout: dialTimeout, TLS: s.TLS, SASL: s.SASL}
}

// explain adds what an error from connecting means when the cause is the
// connection's security, which kafka-go's messages leave the reader to guess.
// errors.Is and errors.As still see the cause.
func explain(err error) error {
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return fmt.Errorf("%w (the broker refused the SASL user name or password)", err)
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return fmt.Errorf("%w (the broker does not offer this SASL mechanism)", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// A broker closes a connection whose first bytes it cannot take: TLS or SASL
		// that its listener does not use, or the lack of them.
		return fmt.Errorf("%w (the broker closed the connection: do TLS and SASL match its listener?)", err)
	}
	return err
}

// diagnose adds to err, the failure of a request made through kafka-go's Transport,
// why a new connection to the brokers fails, if it does. The Transport reports a
// refused SASL authentication as an unexpected EOF or as Broker Not Available; a
// single connection made with dial says what went wrong.
func (s Security) diagnose(ctx context.Context, brokers []string, err error) error {
	if ctx.Err() != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var derr error
	for _, b := range brokers {
		conn, e := s.dial(ctx, b)
		if e == nil {
			_ = conn.Close()
			return err
		}
		derr = e
	}
	return fmt.Errorf("%w; connecting anew: %w", err, derr)
}
