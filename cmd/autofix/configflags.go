package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/config"
)

// configFlags give a command serve's configuration: the defaults, then --config FILE
// (YAML; default $AUTOFIX_CONFIG), then the AUTOFIX_* environment variables, then the command's own flags,
// each of which overrides one field. Every command that touches what serve touches
// (the ledger, the cluster, the token file, Kafka) loads it this way, so that they
// all see what serve sees.
type configFlags struct {
	file      string
	overrides []override
}

// override is a flag of one command that sets one field of the configuration when
// given. (One configFlags may serve several subcommands, each with its own flags.)
type override struct {
	cmd  *cobra.Command
	flag string
	set  func(*config.Config)
}

// register adds --config and the named overrides to cmd.
func (c *configFlags) register(cmd *cobra.Command, names ...string) {
	fl := cmd.Flags()
	fl.StringVar(&c.file, "config", "", "YAML configuration file (serve's)")
	add := func(flag string, set func(*config.Config)) {
		c.overrides = append(c.overrides, override{cmd, flag, set})
	}
	d := config.Default()
	for _, name := range names {
		switch name {
		case "data-dir":
			v := fl.String(name, d.DataDir, "data directory of serve (the SQLite ledger, tokens.json)")
			add(name, func(cfg *config.Config) { cfg.DataDir = *v })
		case "db":
			v := fl.String(name, "", "PostgreSQL URL of the ledger (default: SQLite in the data directory)")
			add(name, func(cfg *config.Config) { cfg.DB = *v })
		case "kubeconfig":
			v := fl.String(name, "", `kubeconfig of the cluster ("in-cluster" in a pod)`)
			add(name, func(cfg *config.Config) { cfg.Kubernetes.Kubeconfig = *v })
		case "http-addr":
			v := fl.String(name, d.HTTP.Addr, "address of the HTTP listener (the API, /healthz, /readyz, /metrics)")
			add(name, func(cfg *config.Config) { cfg.HTTP.Addr = *v })
		case "embedded-kafka-addr":
			v := fl.String(name, d.Kafka.EmbeddedAddr, "address of the embedded broker (used when no --kafka-brokers)")
			add(name, func(cfg *config.Config) { cfg.Kafka.EmbeddedAddr = *v })
		case "kafka-brokers":
			v := fl.String(name, "", "comma-separated brokers of an external Kafka cluster")
			add(name, func(cfg *config.Config) { cfg.Kafka.Brokers = config.SplitList(*v) })
		case "dry-run":
			v := fl.Bool(name, false, "decide and record everything, submit nothing")
			add(name, func(cfg *config.Config) { cfg.Policy.DryRun = *v })
		case "namespaces":
			v := fl.String(name, "", "comma-separated namespaces to watch (default: the configuration's, or all)")
			add(name, func(cfg *config.Config) { cfg.Kubernetes.Namespaces = config.SplitList(*v) })
		case "selector":
			v := fl.String(name, "", "label selector the watched Jobs must match")
			add(name, func(cfg *config.Config) { cfg.Kubernetes.Selector = *v })
		case "pending-grace":
			v := fl.Duration(name, d.Kubernetes.PendingGrace, "how long a pod may fail to start before it is reported")
			add(name, func(cfg *config.Config) { cfg.Kubernetes.PendingGrace = *v })
		case "metrics-url":
			v := fl.String(name, "", "Prometheus to read the peaks of runs from (metrics.url; default: none, or the simulated cluster's)")
			add(name, func(cfg *config.Config) { cfg.Metrics.URL = *v })
		case "log-level":
			v := fl.String(name, d.Log.Level, "debug, info, warn or error")
			add(name, func(cfg *config.Config) { cfg.Log.Level = *v })
		default:
			panic("configFlags: no flag " + name)
		}
	}
}

// add makes flag, a flag of cmd, set a field with set when given.
func (c *configFlags) add(cmd *cobra.Command, flag string, set func(*config.Config)) {
	c.overrides = append(c.overrides, override{cmd, flag, set})
}

// load returns the configuration, validated.
func (c *configFlags) load(cmd *cobra.Command) (config.Config, error) {
	file := c.file
	if !cmd.Flags().Changed("config") {
		file = os.Getenv("AUTOFIX_CONFIG") // a pod's: kubectl exec ... autofix ledger
	}
	cfg, err := config.Load(file, os.LookupEnv)
	if err != nil {
		return cfg, err
	}
	for _, o := range c.overrides {
		if o.cmd == cmd && cmd.Flags().Changed(o.flag) {
			o.set(&cfg)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}
