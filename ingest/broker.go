package ingest

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokerOptions configure the embedded broker.
type BrokerOptions struct {
	// Addr is the host:port it listens on; port 0 picks a free one.
	Addr string
	// DataDir, when set, is where topics, records and group offsets persist, so they
	// survive a restart (and a kill -9). Empty keeps everything in memory.
	DataDir string
	// SessionTimeoutMin lowers the smallest consumer-group session timeout the broker
	// accepts (Kafka's default is 6 s); tests use it to rebalance faster.
	SessionTimeoutMin time.Duration
	// TLS, when set, makes the broker accept TLS connections only, with TLS as the
	// server's side: its Certificates, and ClientCAs with ClientAuth to require client
	// certificates.
	TLS *tls.Config
	// Users, when set, turns SASL on: a connection must authenticate as one of them
	// before any request but ApiVersions.
	Users []User
}

// User is a SASL user of the embedded broker.
type User struct {
	// Mechanism is SASLPlain, SASLScramSHA256 or SASLScramSHA512; a user name may
	// appear once for each.
	Mechanism, Username, Password string
}

// Broker is an in-process, single-node broker that speaks the Kafka wire protocol over
// TCP (twmb/franz-go's kfake). It has no replication; topics without retention
// settings grow without bound, which is why EnsureTopics sets them.
type Broker struct {
	c    *kfake.Cluster
	addr string
}

// StartBroker starts the embedded broker.
func StartBroker(o BrokerOptions) (*Broker, error) {
	host, portStr, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: %w", o.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker address %q: bad port", o.Addr)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
	}
	if o.DataDir != "" {
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	if o.SessionTimeoutMin > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(o.SessionTimeoutMin))
	}
	if o.TLS != nil {
		if len(o.TLS.Certificates) == 0 && o.TLS.GetCertificate == nil {
			return nil, fmt.Errorf("embedded broker on %s: TLS without a certificate", o.Addr)
		}
		opts = append(opts, kfake.TLS(o.TLS))
	}
	if len(o.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
	}
	for i, u := range o.Users {
		switch {
		case u.Mechanism != SASLPlain && u.Mechanism != SASLScramSHA256 && u.Mechanism != SASLScramSHA512:
			return nil, fmt.Errorf("embedded broker: user %d: mechanism %q, want %s, %s or %s", i, u.Mechanism,
				SASLPlain, SASLScramSHA256, SASLScramSHA512)
		case u.Username == "" || u.Password == "":
			return nil, fmt.Errorf("embedded broker: user %d: a user name and a password are required", i)
		}
		// kfake's superusers are its only users; ACLs are not enforced for them.
		opts = append(opts, kfake.Superuser(u.Mechanism, u.Username, u.Password))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", o.Addr, err)
	}
	return &Broker{c: c, addr: c.ListenAddrs()[0]}, nil
}

// Addr is the address clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker; with a DataDir its state is flushed first.
func (b *Broker) Close() { b.c.Close() }
