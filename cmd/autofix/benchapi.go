package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/api"
	"github.com/autofix/autofix/auth"
	"github.com/autofix/autofix/config"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/review"
	"github.com/autofix/autofix/sim"
)

type benchAPIOptions struct {
	url, token   string
	concurrency  []int
	seconds      float64
	rates        []float64
	scenario     string
	distinctEvts int
	text         string
}

func newBenchAPICmd() *cobra.Command {
	var o benchAPIOptions
	cmd := &cobra.Command{
		Use:   "api",
		Short: "POST /v1/recommendations: throughput and p50/p99 latency against the real server on loopback",
		Long: `Bench api starts the HTTP API as serve does (echo, authentication, rate limiter set out of
the way, a fresh SQLite ledger, the embedded rules and models) on a loopback port —
or uses --url and --token of a running server — and drives it with a Go load
generator over HTTP keep-alive connections:

  closed loop: --concurrency workers, each sending its next request when the last
               answered, for --seconds: the throughput, and p50/p99 latency;
  open loop:   requests started at a fixed --rate per second (whatever the answers'
               pace), for --seconds: p50/p99/max latency at that offered load.

The events are the simulator's (--scenario), each a different failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchAPI(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.url, "url", "", "base URL of a running server (default: start one on loopback)")
	f.StringVar(&o.token, "token", "", "a viewer token of the server at --url")
	f.IntSliceVar(&o.concurrency, "concurrency", []int{1, 4, 16, 64}, "closed-loop concurrency levels")
	f.Float64SliceVar(&o.rates, "rate", []float64{500, 1000, 2000}, "open-loop request rates (per second)")
	f.Float64Var(&o.seconds, "seconds", 5, "length of each run")
	f.StringVar(&o.scenario, "scenario", "default", "simulator scenario that renders the events")
	f.IntVar(&o.distinctEvts, "events", 2000, "distinct events to send (round robin)")
	addTextFlag(cmd, &o.text)
	return cmd
}

func benchAPI(ctx context.Context, out io.Writer, o benchAPIOptions) error {
	s, err := loadScenario(o.scenario)
	if err != nil {
		return err
	}
	if err := setText(s, o.text); err != nil {
		return err
	}
	bodies, err := captureEvents(s, o.distinctEvts)
	if err != nil {
		return err
	}
	base, token := o.url, o.token
	if base == "" {
		var stop func()
		base, token, stop, err = startBenchServer(ctx, s)
		if err != nil {
			return err
		}
		defer stop()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256, DisableCompression: true},
		Timeout: 10 * time.Second}
	b := &apiLoad{client: client, url: strings.TrimRight(base, "/") + "/v1/recommendations", token: token, bodies: bodies}
	// Warm up: connections, caches, the models' first calls.
	if _, err := b.closed(ctx, 4, time.Second); err != nil {
		return err
	}
	fmt.Fprintf(out, "POST /v1/recommendations, %d distinct events, %d CPUs\n\n", len(bodies), runtimeProcs())
	fmt.Fprintf(out, "%-22s %12s %10s %10s %10s %8s\n", "run", "requests/s", "p50 ms", "p99 ms", "max ms", "errors")
	d := time.Duration(o.seconds * float64(time.Second))
	for _, c := range o.concurrency {
		r, err := b.closed(ctx, c, d)
		if err != nil {
			return err
		}
		r.print(out, fmt.Sprintf("closed, %d workers", c))
	}
	for _, rate := range o.rates {
		r, err := b.open(ctx, rate, d)
		if err != nil {
			return err
		}
		r.print(out, fmt.Sprintf("open, %g/s offered", rate))
	}
	return nil
}

// startBenchServer runs the API as serve does, on a loopback port, with a viewer token.
func startBenchServer(ctx context.Context, s *sim.Scenario) (string, string, func(), error) {
	dir, err := os.MkdirTemp("", "autofix-bench-api-")
	if err != nil {
		return "", "", nil, err
	}
	cleanup := []func(){func() { _ = os.RemoveAll(dir) }}
	stop := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	store, err := ledger.Open(ctx, filepath.Join(dir, "ledger.db"))
	if err != nil {
		stop()
		return "", "", nil, err
	}
	cleanup = append(cleanup, func() { _ = store.Close() })
	br, err := newScenarioBrain(s)
	if err != nil {
		stop()
		return "", "", nil, err
	}
	ts, err := auth.OpenStore(filepath.Join(dir, auth.StoreFile))
	if err != nil {
		stop()
		return "", "", nil, err
	}
	token, err := ts.Create("bench", auth.Viewer)
	if err != nil {
		stop()
		return "", "", nil, err
	}
	pol := config.Default().Policy
	reviews, err := review.New(review.Options{Ledger: store, Policy: &pol, Catalogue: br.catalogue})
	if err != nil {
		stop()
		return "", "", nil, err
	}
	srv, err := api.New(api.Options{Ledger: store, Review: reviews, Recommender: br.rec, Classifier: br.classifier, Models: br.models,
		Pods: pol.Pods, Auth: auth.NewAuthenticator(ts.Tokens()), RatePerSecond: 1e9, Burst: 1 << 30})
	if err != nil {
		stop()
		return "", "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		return "", "", nil, err
	}
	hs := srv.HTTPServer(ln.Addr().String())
	go func() { _ = hs.Serve(ln) }()
	cleanup = append(cleanup, func() { _ = hs.Close() })
	return "http://" + ln.Addr().String(), token, stop, nil
}

type apiLoad struct {
	client *http.Client
	url    string
	token  string
	bodies [][]byte
	next   atomic.Int64
}

type loadResult struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration
}

func (r loadResult) print(out io.Writer, name string) {
	slices.Sort(r.lat)
	q := func(p float64) float64 {
		if len(r.lat) == 0 {
			return 0
		}
		return float64(r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))].Microseconds()) / 1000
	}
	fmt.Fprintf(out, "%-22s %12.0f %10.2f %10.2f %10.2f %8d\n", name, float64(r.n)/r.elapsed.Seconds(), q(0.5), q(0.99), q(1), r.errors)
}

// one sends one request and returns its latency.
func (b *apiLoad) one(ctx context.Context) (time.Duration, error) {
	body := b.bodies[int(b.next.Add(1))%len(b.bodies)]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.token)
	start := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(start), nil
}

func (b *apiLoad) closed(ctx context.Context, workers int, d time.Duration) (loadResult, error) {
	var mu sync.Mutex
	var res loadResult
	var firstErr error
	end := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var lat []time.Duration
			errs := 0
			for time.Now().Before(end) && ctx.Err() == nil {
				l, err := b.one(ctx)
				if err != nil {
					errs++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, l)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed, res.n = time.Since(start), len(res.lat)
	if res.n == 0 && firstErr != nil {
		return res, fmt.Errorf("every request failed: %w", firstErr)
	}
	return res, nil
}

func (b *apiLoad) open(ctx context.Context, rate float64, d time.Duration) (loadResult, error) {
	var mu sync.Mutex
	var res loadResult
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d / interval)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			_, err := b.one(ctx)
			// Latency from when the request was due, so a generator that falls behind
			// counts against the result rather than hiding the wait.
			l := time.Since(due)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.errors++
				return
			}
			res.lat = append(res.lat, l)
		})
	}
	wg.Wait()
	res.elapsed, res.n = time.Since(start), len(res.lat)
	return res, ctx.Err()
}
