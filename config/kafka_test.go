package config

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/autofix/autofix/internal/testpki"
)

// kafkaFiles are real files for kafka.tls and kafka.sasl: a CA, a client certificate,
// a second client certificate, files that are not what they should be, and a
// password file.
type kafkaFiles struct {
	ca, notPEM, empty, password, missing string
	client, other                        *testpki.Leaf
}

const filePassword = "from-the-file"

func newKafkaFiles(t *testing.T) *kafkaFiles {
	ca := testpki.NewCA(t, "kafka")
	dir := t.TempDir()
	f := &kafkaFiles{ca: ca.CertFile, client: ca.Client(t, "autofix"), other: testpki.NewCA(t, "other").Client(t, "other"),
		notPEM: filepath.Join(dir, "not.pem"), empty: filepath.Join(dir, "empty"), password: filepath.Join(dir, "password"),
		missing: filepath.Join(dir, "missing")}
	for path, content := range map[string]string{f.notPEM: "not a certificate\n", f.empty: "\n", f.password: filePassword + "\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// expand replaces {ca}, {cert}, {key}, {otherKey}, {notPEM}, {empty}, {password} and
// {missing} in yaml with the files' paths.
func (f *kafkaFiles) expand(yaml string) string {
	return strings.NewReplacer("{ca}", f.ca, "{cert}", f.client.CertFile, "{key}", f.client.KeyFile,
		"{otherKey}", f.other.KeyFile, "{notPEM}", f.notPEM, "{empty}", f.empty, "{password}", f.password,
		"{missing}", f.missing).Replace(yaml)
}

func loadYAML(t *testing.T, yaml string, environment map[string]string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(environment))
	if err == nil {
		err = c.Validate()
	}
	return c, err
}

const secureKafka = `kafka:
  brokers: ["kafka-0:9093"]
  tls:
    enabled: true
    caFile: {ca}
    certFile: {cert}
    keyFile: {key}
    serverName: kafka.internal
  sasl:
    mechanism: SCRAM-SHA-256
    username: autofix
    passwordFile: {password}
`

func TestKafkaSecurity(t *testing.T) {
	f := newKafkaFiles(t)
	c, err := loadYAML(t, f.expand(secureKafka), nil)
	if err != nil {
		t.Fatalf("Load+Validate = %v", err)
	}
	tc, err := c.Kafka.TLS.ClientConfig()
	if err != nil {
		t.Fatalf("ClientConfig() = %v", err)
	}
	if tc.ServerName != "kafka.internal" || tc.RootCAs == nil || tc.InsecureSkipVerify || tc.MinVersion < tls.VersionTLS12 {
		t.Errorf("ClientConfig() = ServerName %q, RootCAs %v, InsecureSkipVerify %v, MinVersion %x; want kafka.internal, the CA, false, TLS 1.2",
			tc.ServerName, tc.RootCAs != nil, tc.InsecureSkipVerify, tc.MinVersion)
	}
	cert, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || !bytes.Equal(cert.Certificate[0], f.client.TLS.Certificate[0]) {
		t.Errorf("GetClientCertificate() = %v, want the client certificate", err)
	}
	if p, err := c.Kafka.SASL.ReadPassword(); p != filePassword || err != nil {
		t.Errorf("ReadPassword() = %q, %v; want the file's %q without its newline", p, err, filePassword)
	}
	// The environment's password wins over the file's.
	c, err = loadYAML(t, f.expand(secureKafka), map[string]string{"AUTOFIX_KAFKA_SASL_PASSWORD": "from-the-environment"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.Kafka.SASL.ReadPassword(); p != "from-the-environment" || err != nil {
		t.Errorf("ReadPassword() = %q, %v; want the environment's", p, err)
	}
	// TLS off: no configuration.
	d := Default()
	if tc, err := d.Kafka.TLS.ClientConfig(); tc != nil || err != nil {
		t.Errorf("ClientConfig() with TLS off = %v, %v; want nil, nil", tc, err)
	}
}

func TestKafkaSecurityInvalid(t *testing.T) {
	f := newKafkaFiles(t)
	brokers := "kafka:\n  brokers: [\"k:9093\"]\n"
	tls := func(fields string) string { return brokers + "  tls:\n" + fields }
	sasl := func(fields string) string { return brokers + "  sasl:\n" + fields }
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"mechanism", sasl("    mechanism: FOO\n    username: u\n    passwordFile: {password}\n"), nil,
			`kafka.sasl.mechanism: "FOO", want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"mechanism in lower case", sasl("    mechanism: plain\n    username: u\n    passwordFile: {password}\n"), nil,
			`kafka.sasl.mechanism: "plain"`},
		{"no user name", sasl("    mechanism: PLAIN\n    passwordFile: {password}\n"), nil, "kafka.sasl.username: required"},
		{"no password", sasl("    mechanism: PLAIN\n    username: u\n"), nil, "kafka.sasl.passwordFile: required"},
		{"password file missing", sasl("    mechanism: PLAIN\n    username: u\n    passwordFile: {missing}\n"), nil,
			"kafka.sasl.passwordFile: open"},
		{"password file empty", sasl("    mechanism: PLAIN\n    username: u\n    passwordFile: {empty}\n"), nil,
			"kafka.sasl.passwordFile: " + f.empty + " is empty"},
		{"a password in the file", sasl("    mechanism: PLAIN\n    username: u\n    password: hunter2\n"), nil,
			"field password not found"},
		{"user name without a mechanism", sasl("    username: u\n"), nil, "kafka.sasl.username: set, but kafka.sasl.mechanism is empty"},
		{"password file without a mechanism", sasl("    passwordFile: {password}\n"), nil, "kafka.sasl.passwordFile: set, but"},
		{"environment password without a mechanism", brokers, map[string]string{"AUTOFIX_KAFKA_SASL_PASSWORD": "x"},
			"AUTOFIX_KAFKA_SASL_PASSWORD: set, but kafka.sasl.mechanism is empty"},
		{"SASL on the embedded broker", "kafka:\n  sasl:\n    mechanism: PLAIN\n    username: u\n    passwordFile: {password}\n", nil,
			"kafka.sasl.mechanism: applies to kafka.brokers"},
		{"TLS on the embedded broker", "kafka:\n  tls:\n    enabled: true\n", nil, "kafka.tls.enabled: applies to kafka.brokers"},
		{"CA without TLS", tls("    caFile: {ca}\n"), nil, "kafka.tls.caFile: set, but kafka.tls.enabled is false"},
		{"server name without TLS", tls("    serverName: k\n"), nil, "kafka.tls.serverName: set, but"},
		{"insecureSkipVerify without TLS", tls("    insecureSkipVerify: true\n"), nil, "kafka.tls.insecureSkipVerify: set, but"},
		{"CA missing", tls("    enabled: true\n    caFile: {missing}\n"), nil, "kafka.tls.caFile: open"},
		{"CA not PEM", tls("    enabled: true\n    caFile: {notPEM}\n"), nil, "kafka.tls.caFile: no PEM certificate in " + f.notPEM},
		{"certificate without a key", tls("    enabled: true\n    certFile: {cert}\n"), nil, "kafka.tls.keyFile: required with kafka.tls.certFile"},
		{"key without a certificate", tls("    enabled: true\n    keyFile: {key}\n"), nil, "kafka.tls.certFile: required with kafka.tls.keyFile"},
		{"certificate missing", tls("    enabled: true\n    certFile: {missing}\n    keyFile: {key}\n"), nil, "kafka.tls.certFile: open"},
		{"key missing", tls("    enabled: true\n    certFile: {cert}\n    keyFile: {missing}\n"), nil, "kafka.tls.keyFile: open"},
		{"certificate not PEM", tls("    enabled: true\n    certFile: {notPEM}\n    keyFile: {key}\n"), nil,
			"kafka.tls.certFile, kafka.tls.keyFile:"},
		{"key of another certificate", tls("    enabled: true\n    certFile: {cert}\n    keyFile: {otherKey}\n"), nil,
			"kafka.tls.certFile, kafka.tls.keyFile: tls: private key does not match public key"},
		{"insecureSkipVerify with a CA", tls("    enabled: true\n    insecureSkipVerify: true\n    caFile: {ca}\n"), nil,
			"kafka.tls.insecureSkipVerify: verifies nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, f.expand(tt.yaml), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load+Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestKafkaPasswordNeverShown prints a configuration with a password in every way
// the service might, and makes it fail validation: the password shows nowhere.
func TestKafkaPasswordNeverShown(t *testing.T) {
	const password = "hunter2-kafka"
	f := newKafkaFiles(t)
	c, err := loadYAML(t, f.expand(secureKafka), map[string]string{"AUTOFIX_KAFKA_SASL_PASSWORD": password})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c, "sasl", c.Kafka.SASL, "password", c.Kafka.SASL.Password)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c, "password", c.Kafka.SASL.Password)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ym, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
		"%s":   fmt.Sprintf("%s", c.Kafka.SASL.Password), //nolint:staticcheck // the test is of what %s shows
		"%q":   fmt.Sprintf("%q", c.Kafka.SASL.Password),
		"slog": logs.String(), "JSON": string(js), "YAML": string(ym),
	}
	c.Kafka.SASL.Mechanism = "FOO"
	if err := c.Validate(); err != nil {
		shown["Validate"] = err.Error()
	}
	for how, s := range shown {
		if strings.Contains(s, password) {
			t.Errorf("%s shows the password: %s", how, s)
		}
	}
	if !strings.Contains(shown["%+v"], redacted) {
		t.Errorf("%%+v = %s, want the password shown as %s", shown["%+v"], redacted)
	}
}

// TestKafkaClientCertificateReloaded: a client certificate replaced in its files is
// the one the next connection presents.
func TestKafkaClientCertificateReloaded(t *testing.T) {
	f := newKafkaFiles(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	install := func(l *testpki.Leaf) {
		for dst, src := range map[string]string{certFile: l.CertFile, keyFile: l.KeyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(f.client)
	k := KafkaTLS{Enabled: true, CertFile: certFile, KeyFile: keyFile}
	tc, err := k.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*testpki.Leaf{f.client, f.other, f.other} {
		install(want)
		got, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil || !bytes.Equal(got.Certificate[0], want.TLS.Certificate[0]) {
			t.Errorf("connection %d: GetClientCertificate() = %v, want the certificate in the files", i, err)
		}
	}
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{}); err == nil || !strings.Contains(err.Error(), "kafka.tls.keyFile") {
		t.Errorf("GetClientCertificate() with a broken key = %v, want an error naming kafka.tls.keyFile", err)
	}
}
