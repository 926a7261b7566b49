package main

import (
	"github.com/spf13/cobra"

	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/service"
)

// kafkaTarget is where publish and watch send messages and how they connect.
type kafkaTarget struct {
	brokers []string
	topic   string
	sec     ingest.Security
}

// kafkaFlags are the flags of a command that publishes to Kafka: serve's
// configuration (its kafka section: brokers, topic, tls, sasl — the password from
// kafka.sasl.passwordFile or AUTOFIX_KAFKA_SASL_PASSWORD), --brokers and --topic over it.
type kafkaFlags struct{ configFlags }

func (f *kafkaFlags) register(cmd *cobra.Command, topicUsage string, more ...string) {
	f.configFlags.register(cmd, more...)
	fl := cmd.Flags()
	brokers := fl.String("brokers", "", "comma-separated Kafka brokers (default: the configuration's, or the embedded broker's address)")
	f.add(cmd, "brokers", func(cfg *config.Config) { cfg.Kafka.Brokers = config.SplitList(*brokers) })
	topic := fl.String("topic", config.Default().Kafka.Topic, topicUsage)
	f.add(cmd, "topic", func(cfg *config.Config) { cfg.Kafka.Topic = *topic })
}

// target loads the configuration and says where to send messages and how.
func (f *kafkaFlags) target(cmd *cobra.Command) (kafkaTarget, config.Config, error) {
	cfg, err := f.load(cmd)
	if err != nil {
		return kafkaTarget{}, cfg, err
	}
	t := kafkaTarget{brokers: cfg.Kafka.Brokers, topic: cfg.Kafka.Topic}
	if len(t.brokers) == 0 {
		t.brokers = []string{cfg.Kafka.EmbeddedAddr}
	}
	t.sec, err = service.KafkaSecurity(&cfg.Kafka)
	return t, cfg, err
}
