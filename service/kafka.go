package service

import (
	"fmt"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ingest"
)

// KafkaSecurity builds, from kafka.tls and kafka.sasl (validated), how every client
// of the brokers connects. Both off: the zero Security, plaintext.
func KafkaSecurity(k *config.Kafka) (ingest.Security, error) {
	var sec ingest.Security
	var err error
	if sec.TLS, err = k.TLS.ClientConfig(); err != nil {
		return sec, err
	}
	if k.SASL.Mechanism == "" {
		return sec, nil
	}
	password, err := k.SASL.ReadPassword()
	if err != nil {
		return sec, err
	}
	if sec.SASL, err = ingest.NewSASL(k.SASL.Mechanism, k.SASL.Username, password); err != nil {
		return sec, fmt.Errorf("kafka.sasl: %w", err)
	}
	return sec, nil
}
