package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
)

type soakOptions struct {
	db         string
	events     int
	templates  int
	sample     time.Duration
	maxLag     int
	csv, plot  string
	warmupFrac float64
}

func newSoakCmd() *cobra.Command {
	var o soakOptions
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Push events through a real serve process and sample its memory (RSS) as they go",
		Long: `Bench soak starts a broker of its own and this binary's serve as a separate process
(shadow mode: no cluster; SQLite ledger in a temporary directory, or --db; the broker outside
serve, so that its records do not count as serve's memory), publishes --events
failure events rendered by the simulator — unique ids over --templates recurring
jobs, 1% cut short, 0.5% with absurd numbers — keeping at most --max-lag unrecorded,
and samples serve's resident memory (VmRSS) every --sample.

It prints the curve, and the growth after warm-up (the first --warmup of the
events): the least-squares slope in MiB per 100,000 events and the spread.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return benchSoak(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	f := cmd.Flags()
	f.IntVar(&o.events, "events", 1_000_000, "events to push through")
	f.StringVar(&o.db, "db", "", "PostgreSQL URL for serve's ledger (default: SQLite in a temporary directory)")
	f.IntVar(&o.templates, "templates", 5000, "recurring jobs the events belong to")
	f.DurationVar(&o.sample, "sample", 5*time.Second, "how often serve's RSS is read")
	f.IntVar(&o.maxLag, "max-lag", 50_000, "most events published and not yet recorded")
	f.StringVar(&o.csv, "csv", "", "write the samples to this CSV file")
	f.StringVar(&o.plot, "plot", "", "write a PNG of RSS against events recorded to this file")
	f.Float64Var(&o.warmupFrac, "warmup", 0.2, "share of the events counted as warm-up")
	return cmd
}

// soakSample is one reading of serve's memory.
type soakSample struct {
	at           time.Duration
	recorded     int
	rssMiB, hwmM float64
}

func benchSoak(ctx context.Context, out io.Writer, o soakOptions) error {
	if o.events < 1000 || o.templates < 1 || o.sample <= 0 || o.maxLag < 1000 {
		return errors.New("--events >= 1000, --templates >= 1, --sample > 0 and --max-lag >= 1000, please")
	}
	s, err := loadScenario("default")
	if err != nil {
		return err
	}
	base, err := captureEvents(s, 5000)
	if err != nil {
		return err
	}
	events := make([]failure.Event, len(base))
	for i, l := range base {
		if err := json.Unmarshal(l, &events[i]); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "autofix-soak-")
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
	// Short retention: the broker keeps what serve has read for a minute only.
	if err := ingest.EnsureTopics(ctx, brokers, ingest.Security{}, ingest.Topic{Name: "autofix.failures", Partitions: 6, Retention: time.Minute},
		ingest.Topic{Name: "autofix.failures.dlq", Partitions: 1, Retention: time.Minute}); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	httpAddr, err := freePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "autofix.yaml")
	if err := os.WriteFile(cfgPath, []byte("kubernetes:\n  kubeconfig: none\nkafka:\n  createTopics: false\n"), 0o600); err != nil {
		return err
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	args := []string{"serve", "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", httpAddr, "--kafka-brokers", broker.Addr(), "--log-level", "error"}
	dsn := filepath.Join(dir, "data", "ledger.db")
	if o.db != "" {
		args, dsn = append(args, "--db", o.db), o.db
	}
	srv := exec.CommandContext(serveCtx, self, args...) // #nosec G204 -- this binary
	srv.Cancel = func() error { return srv.Process.Signal(os.Interrupt) }
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { stopServe(); _ = srv.Wait() }()
	if err := waitReady(ctx, "http://"+httpAddr+"/readyz", time.Minute); err != nil {
		return err
	}
	store, err := ledger.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	before, err := store.Counts(ctx) // a reused PostgreSQL database may hold earlier runs
	if err != nil {
		return err
	}
	total := func(m map[ledger.State]int) int {
		n := 0
		for _, c := range m {
			n += c
		}
		return n
	}
	recorded := func() (int, error) {
		m, err := store.Counts(ctx)
		return total(m) - total(before), err
	}

	p, err := ingest.NewProducer(ingest.ProducerOptions{Brokers: brokers, Topic: "autofix.failures"})
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }()
	run := fmt.Sprintf("s%x-", time.Now().UnixNano())
	var samples []soakSample
	start := time.Now()
	nextSample := start
	sample := func() error {
		n, err := recorded()
		if err != nil {
			return err
		}
		rss, hwm, err := procMemory(srv.Process.Pid)
		if err != nil {
			return err
		}
		samples = append(samples, soakSample{at: time.Since(start), recorded: n, rssMiB: rss, hwmM: hwm})
		fmt.Fprintf(out, "%8s  %9d recorded  RSS %7.1f MiB  (peak %7.1f MiB)\n", time.Since(start).Round(time.Second), n, rss, hwm)
		nextSample = nextSample.Add(o.sample)
		return nil
	}
	if err := sample(); err != nil {
		return err
	}
	const chunk = 1000
	for sent := 0; sent < o.events; {
		msgs := make([]ingest.Message, 0, chunk)
		for i := sent; i < min(sent+chunk, o.events); i++ {
			ev := events[i%len(events)]
			ev.ID = run + strconv.Itoa(i)
			ev.Job.Name = fmt.Sprintf("%s-%d", ev.Job.Template, i%o.templates)
			ev.Job.Template = fmt.Sprintf("%s-%d", ev.Job.Template, i%o.templates)
			if i%200 == 7 {
				ev.Failure.DurationSeconds = 1e300 // refused, naming the field
			}
			b, err := json.Marshal(&ev)
			if err != nil {
				return err
			}
			if i%100 == 99 {
				b = b[:len(b)/2] // cut short
			}
			msgs = append(msgs, ingest.Message{Key: []byte(failure.PartitionKey(&ev)), Value: b})
		}
		if err := p.Publish(ctx, msgs...); err != nil {
			return err
		}
		sent += len(msgs)
		for sent%(10*chunk) == 0 { // look at the lag every 10,000 events: counting is not free
			if time.Now().After(nextSample) {
				if err := sample(); err != nil {
					return err
				}
			}
			n, err := recorded()
			if err != nil {
				return err
			}
			if sent-n <= o.maxLag {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	for {
		n, err := recorded()
		if err != nil {
			return err
		}
		if n >= o.events || srv.ProcessState != nil {
			break
		}
		if time.Now().After(nextSample) {
			if err := sample(); err != nil {
				return err
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := sample(); err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := soakReport(out, o, samples, elapsed); err != nil {
		return err
	}
	if o.csv != "" {
		if err := writeSoakCSV(o.csv, samples); err != nil {
			return err
		}
	}
	if o.plot != "" {
		return plotSoak(o.plot, o, samples)
	}
	return nil
}

// soakReport prints the growth of RSS after warm-up.
func soakReport(out io.Writer, o soakOptions, samples []soakSample, elapsed time.Duration) error {
	warm := int(o.warmupFrac * float64(o.events))
	var xs, ys []float64
	for _, s := range samples {
		if s.recorded >= warm {
			xs, ys = append(xs, float64(s.recorded)/1e5), append(ys, s.rssMiB)
		}
	}
	last := samples[len(samples)-1]
	fmt.Fprintf(out, "\n%d events recorded in %s (%.0f events/s)\n", last.recorded, elapsed.Round(time.Second),
		float64(last.recorded)/elapsed.Seconds())
	if len(xs) < 3 {
		fmt.Fprintln(out, "too few samples after warm-up to tell a trend: sample more often")
		return nil
	}
	_, slope := stat.LinearRegression(xs, ys, nil, false)
	lo, hi := ys[0], ys[0]
	for _, y := range ys {
		lo, hi = min(lo, y), max(hi, y)
	}
	fmt.Fprintf(out, "after warm-up (%d events): RSS %.1f to %.1f MiB over %d samples, slope %+.2f MiB per 100,000 events; peak %.1f MiB\n",
		warm, lo, hi, len(ys), slope, last.hwmM)
	return nil
}

func writeSoakCSV(path string, samples []soakSample) error {
	f, err := os.Create(path) // #nosec G304 -- the operator names the file
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"seconds", "recorded", "rss_mib", "peak_rss_mib"})
	for _, s := range samples {
		_ = w.Write([]string{strconv.FormatFloat(s.at.Seconds(), 'f', 1, 64), strconv.Itoa(s.recorded),
			strconv.FormatFloat(s.rssMiB, 'f', 1, 64), strconv.FormatFloat(s.hwmM, 'f', 1, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func plotSoak(path string, o soakOptions, samples []soakSample) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("autofix serve's resident memory over %d events", samples[len(samples)-1].recorded)
	p.X.Label.Text = "events recorded (thousands)"
	p.Y.Label.Text = "RSS (MiB)"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	pts := make(plotter.XYs, len(samples))
	for i, s := range samples {
		pts[i] = plotter.XY{X: float64(s.recorded) / 1000, Y: s.rssMiB}
		p.Y.Max = max(p.Y.Max, 1.2*s.rssMiB)
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	line.Width = vg.Points(1.5)
	p.Add(line)
	warm := plotter.XYs{{X: o.warmupFrac * float64(o.events) / 1000, Y: 0}, {X: o.warmupFrac * float64(o.events) / 1000, Y: p.Y.Max}}
	wl, err := plotter.NewLine(warm)
	if err != nil {
		return err
	}
	wl.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(wl)
	p.Legend.Add("RSS", line)
	p.Legend.Add("end of warm-up", wl)
	p.Legend.Top, p.Legend.Left = false, true
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}

// procMemory reads a process's resident memory and its peak, in MiB, from /proc.
func procMemory(pid int) (rss, hwm float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read serve's memory: %w", err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q", k, v)
		}
		if k == "VmRSS" {
			rss = kb / 1024
		} else {
			hwm = kb / 1024
		}
	}
	return rss, hwm, sc.Err()
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

func waitReady(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("serve not ready at %s within %s", url, within)
}
