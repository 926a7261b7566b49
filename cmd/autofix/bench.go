package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
	"github.com/autofix/autofix/sim"
)

type benchOptions struct {
	events   int
	db       string
	scenario string
	rate     float64
	seconds  float64
	batch    int
	profile  string
	text     string
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure autofix: its speed, and its retry policy against others",
	}
	var o benchOptions
	ingestCmd := &cobra.Command{
		Use:   "ingest",
		Short: "Events/s from Kafka through the whole decision to a durable ledger record, and the latency",
		Long: `Bench ingest starts an embedded broker, publishes --events failure events rendered by the
simulator (the scenario's real mix of failures, 1% of them malformed), and measures
two things through the same loop serve runs (consumer group, decode, dedup, classify,
recommend, policy, one ledger transaction per batch, offsets committed after it):

  throughput: the backlog drained as fast as it goes, in events/s;
  latency:    events published at --rate per second for --seconds, each timed from
              its produce timestamp to its decision being durable (p50, p99, max).

The ledger is a fresh SQLite file with synchronous=FULL, or --db postgres://... .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchIngest(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := ingestCmd.Flags()
	f.IntVar(&o.events, "events", 50000, "events in the throughput phase")
	f.StringVar(&o.db, "db", "", "PostgreSQL URL for the ledger (default: a fresh SQLite file)")
	f.StringVar(&o.scenario, "scenario", "default", "simulator scenario that renders the events")
	f.Float64Var(&o.rate, "rate", 2000, "events/s offered in the latency phase")
	f.Float64Var(&o.seconds, "seconds", 10, "length of the latency phase")
	f.IntVar(&o.batch, "max-batch", 1000, "most events per ledger transaction")
	f.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the throughput phase to this file")
	addTextFlag(ingestCmd, &o.text)
	cmd.AddCommand(ingestCmd, newBenchAPICmd(), newSoakCmd(), newBenchPoliciesCmd())
	return cmd
}

// captureEvents renders n first failures of the scenario's jobs as JSON lines, the
// way the watcher would publish them.
func captureEvents(s *sim.Scenario, n int) ([][]byte, error) {
	c := &capture{n: n}
	jobs := n * 3
	for len(c.lines) < n {
		c.lines = c.lines[:0]
		if _, err := sim.Run(s, c, sim.Options{Jobs: jobs}); err != nil {
			return nil, err
		}
		jobs *= 2
	}
	return c.lines, nil
}

// capture is a sim.Policy that never retries and keeps the failure events it sees.
type capture struct {
	n     int
	lines [][]byte
}

func (*capture) Name() string { return "capture" }

func (c *capture) Retry(ev *failure.Event, _ []failure.Outcome) (failure.Option, bool) {
	if len(c.lines) < c.n {
		if b, err := json.Marshal(ev); err == nil {
			c.lines = append(c.lines, b)
		}
	}
	return failure.Option{}, false
}

func benchIngest(ctx context.Context, out io.Writer, o benchOptions) error {
	if o.events < 100 || o.rate <= 0 || o.seconds <= 0 {
		return fmt.Errorf("--events >= 100, --rate and --seconds > 0, please")
	}
	s, err := loadScenario(o.scenario)
	if err != nil {
		return err
	}
	if err := setText(s, o.text); err != nil {
		return err
	}
	latencyEvents := int(o.rate * o.seconds)
	lines, err := captureEvents(s, o.events+latencyEvents)
	if err != nil {
		return err
	}
	run := fmt.Sprintf("b%x-", time.Now().UnixNano()) // fresh ids, so a reused database dedupes nothing
	msgs := make([]ingest.Message, len(lines))
	malformed := 0
	for i, l := range lines {
		var ev failure.Event
		_ = json.Unmarshal(l, &ev)
		ev.ID = run + ev.ID
		b, _ := json.Marshal(&ev)
		if i%100 == 99 {
			b, malformed = b[:len(b)/2], malformed+1 // cut short: a poison message
		}
		msgs[i] = ingest.Message{Key: []byte(failure.PartitionKey(&ev)), Value: b}
	}

	dir, err := os.MkdirTemp("", "autofix-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	broker, err := ingest.StartBroker(ingest.BrokerOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer broker.Close()
	brokers := []string{broker.Addr()}
	if err := ingest.EnsureTopics(ctx, brokers, ingest.Security{}, ingest.Topic{Name: "failures", Partitions: 6},
		ingest.Topic{Name: "failures.dlq", Partitions: 1}); err != nil {
		return err
	}
	dsn := o.db
	if dsn == "" {
		dsn = filepath.Join(dir, "ledger.db")
	}
	store, err := ledger.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	br, err := newScenarioBrain(s)
	if err != nil {
		return err
	}
	p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: brokers, Topic: "failures"})
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }()

	// Phase 1: a backlog of o.events, drained as fast as the loop goes.
	t0 := time.Now()
	for i := 0; i < o.events; i += 5000 {
		if err := p.Publish(ctx, msgs[i:min(i+5000, o.events)]...); err != nil {
			return err
		}
	}
	publish := time.Since(t0)

	var done atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	measuring := atomic.Bool{}
	pol := policy.Default()
	intake := &engine.Intake{Ledger: store, Recommender: br.rec, Policy: &pol,
		Decided: func(_ *ledger.Entry, d time.Duration) {
			done.Add(1)
			if measuring.Load() {
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
			}
		}}
	consumer, err := ingest.NewConsumer(ingest.ConsumerOptions{Brokers: brokers, Topic: "failures", GroupID: "bench",
		DeadLetterTopic: "failures.dlq", MaxBatch: o.batch})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- consumer.Run(runCtx, intake) }()
	processed := func() int64 { return done.Load() + min(consumer.Stats().DeadLettered, int64(malformed)) }
	wait := func(n int64, limit time.Duration) error {
		deadline := time.Now().Add(limit)
		for processed() < n {
			if time.Now().After(deadline) {
				return fmt.Errorf("only %d of %d events recorded after %s", processed(), n, limit)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	}
	// The clock starts at the first recorded event: joining the group is not throughput.
	if err := wait(1, time.Minute); err != nil {
		return err
	}
	t1 := time.Now()
	if o.profile != "" {
		f, err := os.Create(o.profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
	}
	if err := wait(int64(o.events), 10*time.Minute); err != nil {
		return err
	}
	drain := time.Since(t1)
	pprof.StopCPUProfile()

	// Phase 2: a steady o.rate per second, each event timed to its durable decision.
	measuring.Store(true)
	tick := time.Duration(float64(time.Second) / o.rate * 10) // publish in tens
	t2 := time.Now()
	next := t2
	for i := o.events; i < len(msgs); i += 10 {
		if err := p.Publish(ctx, msgs[i:min(i+10, len(msgs))]...); err != nil {
			return err
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	offered := float64(len(msgs)-o.events) / time.Since(t2).Seconds()
	if err := wait(int64(len(msgs)), 5*time.Minute); err != nil {
		return err
	}
	stop()
	if err := <-runErr; err != nil {
		return err
	}

	mu.Lock()
	slices.Sort(latencies)
	mu.Unlock()
	q := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	st := consumer.Stats()
	fmt.Fprintf(out, "ledger: %s   events: %d (%d malformed, dead-lettered)   max batch: %d   GOMAXPROCS: %d\n",
		store.Backend(), len(msgs), malformed, o.batch, runtimeProcs())
	fmt.Fprintf(out, "publish:    %8.0f events/s\n", float64(o.events)/publish.Seconds())
	fmt.Fprintf(out, "throughput: %8.0f events/s  (%.1f µs/event, %d batches, %d events drained in %s)\n",
		float64(o.events)/drain.Seconds(), float64(drain.Microseconds())/float64(o.events), st.Batches, o.events, drain.Round(time.Millisecond))
	fmt.Fprintf(out, "latency at %.0f events/s offered (%d events): p50 %s  p99 %s  max %s\n",
		offered, len(latencies), q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), q(1).Round(10*time.Microsecond))
	if st.DeadLettered != int64(malformed) {
		return fmt.Errorf("dead-lettered %d messages, want %d", st.DeadLettered, malformed)
	}
	return nil
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
