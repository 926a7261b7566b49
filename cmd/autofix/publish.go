package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
)

func newPublishCmd() *cobra.Command {
	var kf kafkaFlags
	cmd := &cobra.Command{
		Use:   "publish [FILE|-]",
		Short: "Send each line of FILE (or standard input) to Kafka as one message, byte for byte",
		Long: `Publish sends each non-empty line of FILE ("-" for standard input; the bundled sample
events when no FILE is given) to the failures topic as one message, byte for byte —
malformed lines too, which is how the dead-letter topic is exercised. A line that
decodes as a FailureEvent is keyed by its job chain, so the events of one job stay in
order on one partition; other lines have no key. With --config it connects as serve
does (kafka.brokers, kafka.tls, kafka.sasl).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, name, closeIn, err := openInput(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			defer closeIn()
			to, _, err := kf.target(cmd)
			if err != nil {
				return err
			}
			p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: to.brokers, Security: to.sec, Topic: to.topic})
			if err != nil {
				return err
			}
			n, err := publishLines(cmd, p, in)
			if cerr := p.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("publish %s: %w (after %d messages)", name, err, n)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "published %d messages from %s to %s\n", n, name, to.topic)
			return nil
		},
	}
	kf.register(cmd, "topic to publish to (default: the configuration's)")
	return cmd
}

// publishLines sends in's lines in batches of up to 1,000.
func publishLines(cmd *cobra.Command, p *ingest.Producer, in io.Reader) (int, error) {
	r := bufio.NewReaderSize(in, 1<<20)
	batch := make([]ingest.Message, 0, 1000)
	sent := 0
	flush := func() error {
		if err := p.Publish(cmd.Context(), batch...); err != nil {
			return err
		}
		sent += len(batch)
		batch = batch[:0]
		return nil
	}
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			if len(line) > 0 {
				batch = append(batch, ingest.Message{Key: keyOf(line), Value: line})
			}
		}
		if len(batch) == cap(batch) {
			if ferr := flush(); ferr != nil {
				return sent, ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return sent, flush()
		}
		if err != nil {
			return sent, err
		}
	}
}

// keyOf keys a FailureEvent by its job chain; anything else gets no key.
func keyOf(line []byte) []byte {
	ev, err := failure.Decode(line)
	if err != nil {
		return nil
	}
	return []byte(failure.PartitionKey(&ev))
}
