package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ingest"
)

// kafkaSecurity builds, from kafka.tls and kafka.sasl (validated), how every client
// of the brokers connects. Both off: the zero Security, plaintext.
func kafkaSecurity(k *config.Kafka) (ingest.Security, error) {
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

// kafkaTarget is where publish and watch send messages and how they connect.
type kafkaTarget struct {
	brokers []string
	topic   string
	sec     ingest.Security
}

// kafkaFlags are the flags of a command that publishes to Kafka.
type kafkaFlags struct {
	config, brokers, topic string
}

func (f *kafkaFlags) register(cmd *cobra.Command, topicUsage string) {
	d := config.Default()
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration (serve's) whose kafka section is used: brokers, topic, tls, sasl "+
		"(the password from kafka.sasl.passwordFile or AUTOFIX_KAFKA_SASL_PASSWORD)")
	fl.StringVar(&f.brokers, "brokers", d.Kafka.EmbeddedAddr, "comma-separated Kafka brokers (default: the configuration's, or the embedded broker's address)")
	fl.StringVar(&f.topic, "topic", d.Kafka.Topic, topicUsage)
}

// target loads the configuration as serve does (the file, then the AUTOFIX_*
// environment), puts --brokers and --topic over it, and validates it.
func (f *kafkaFlags) target(cmd *cobra.Command) (kafkaTarget, error) {
	cfg, err := config.Load(f.config, os.LookupEnv)
	if err != nil {
		return kafkaTarget{}, err
	}
	fl := cmd.Flags()
	if fl.Changed("brokers") {
		cfg.Kafka.Brokers = config.SplitList(f.brokers)
	}
	if fl.Changed("topic") {
		cfg.Kafka.Topic = f.topic
	}
	if err := cfg.Validate(); err != nil {
		return kafkaTarget{}, fmt.Errorf("config: %w", err)
	}
	t := kafkaTarget{brokers: cfg.Kafka.Brokers, topic: cfg.Kafka.Topic}
	if len(t.brokers) == 0 {
		t.brokers = []string{cfg.Kafka.EmbeddedAddr}
	}
	t.sec, err = kafkaSecurity(&cfg.Kafka)
	return t, err
}
