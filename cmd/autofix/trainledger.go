package main

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/engine"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/models"
)

// ledgerTrainOptions are train's flags for --from-ledger.
type ledgerTrainOptions struct {
	on          bool
	cf          configFlags
	since       string
	until       string
	maxExamples int
	maxPerNS    int
	withSim     int
	testShare   float64
	prior       string
	history     int
}

// ledgerOnly are the flags that mean something only with --from-ledger.
var ledgerOnly = []string{"config", "data-dir", "db", "since", "until", "max-examples", "max-per-namespace", "with-sim", "test-share", "models", "history"}

func (lo *ledgerTrainOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&lo.on, "from-ledger", false, "train on the retries the ledger recorded (serve's: --config, --data-dir, --db)")
	lo.cf.register(cmd, "data-dir", "db")
	f.StringVar(&lo.since, "since", "", "with --from-ledger: failures received at or after a time (RFC 3339) or within a duration ago (720h)")
	f.StringVar(&lo.until, "until", "", "with --from-ledger: failures received before a time (RFC 3339; default now), and only what was recorded before it")
	f.IntVar(&lo.maxExamples, "max-examples", 100_000, "with --from-ledger: keep at most the latest N retries (each, with a history of 20, takes about 5 KB)")
	f.IntVar(&lo.maxPerNS, "max-per-namespace", 10_000, "with --from-ledger: keep at most the latest N retries of any one namespace, so that no tenant's failures, whose outcomes its own code decides, outweigh the others'")
	f.IntVar(&lo.withSim, "with-sim", 0, "with --from-ledger: add the retries of N simulated runs (per --telemetry setting) to the training part")
	f.Float64Var(&lo.testShare, "test-share", 0.2, "with --from-ledger: the latest share of the retries to evaluate on")
	f.StringVar(&lo.prior, "models", "", "with --from-ledger: the models kept for what too few retries fit (default: the embedded models)")
	f.IntVar(&lo.history, "history", engine.DefaultHistoryLimit, "with --from-ledger: outcomes of its template each retry's history keeps (as serve's decisions)")
}

// check refuses flags of --from-ledger without it, and values out of range.
func (lo *ledgerTrainOptions) check(cmd *cobra.Command, o *trainOptions) error {
	if !lo.on {
		for _, name := range ledgerOnly {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("--%s: only with --from-ledger", name)
			}
		}
		return nil
	}
	switch {
	case o.outcomes != "":
		return errors.New("--examples: not with --from-ledger")
	case cmd.Flags().Changed("jobs"):
		return errors.New("--jobs: not with --from-ledger (--with-sim says how many runs to simulate)")
	case lo.maxExamples < 2:
		return fmt.Errorf("--max-examples: %d, want at least 2", lo.maxExamples)
	case lo.maxPerNS < 1:
		return fmt.Errorf("--max-per-namespace: %d, want at least 1", lo.maxPerNS)
	case lo.withSim < 0:
		return fmt.Errorf("--with-sim: %d, want 0 or more", lo.withSim)
	case !(lo.testShare > 0 && lo.testShare < 1):
		return fmt.Errorf("--test-share: %v, want more than 0 and less than 1", lo.testShare)
	case lo.history < 1:
		return fmt.Errorf("--history: %d, want at least 1", lo.history)
	}
	return nil
}

// ledgerRetry is a retry from the ledger, as an example, with when its failure was received.
type ledgerRetry struct {
	at time.Time
	id string
	ex models.Example
}

func retryOlder(a, b *ledgerRetry) bool {
	return a.at.Before(b.at) || a.at.Equal(b.at) && a.id < b.id
}

// latestRetries keeps the latest retries pushed into it, up to its cap (a min-heap by time:
// the oldest is dropped first).
type latestRetries struct {
	items   []*ledgerRetry
	cap     int
	dropped int
}

func (l *latestRetries) Len() int           { return len(l.items) }
func (l *latestRetries) Less(i, j int) bool { return retryOlder(l.items[i], l.items[j]) }
func (l *latestRetries) Swap(i, j int)      { l.items[i], l.items[j] = l.items[j], l.items[i] }
func (l *latestRetries) Push(x any)         { l.items = append(l.items, x.(*ledgerRetry)) }
func (l *latestRetries) Pop() any {
	n := len(l.items) - 1
	x := l.items[n]
	l.items[n] = nil
	l.items = l.items[:n]
	return x
}

func (l *latestRetries) add(d *ledgerRetry) {
	heap.Push(l, d)
	if l.Len() > l.cap {
		heap.Pop(l)
		l.dropped++
	}
}

// ledgerExamples reads the retries of the ledger's window, the latest lo.maxExamples
// of them and at most the latest lo.maxPerNS of each namespace, oldest first, and
// prints where they came from. The namespace's cap comes first: a tenant who fails
// its Jobs on purpose, many times and lately, would otherwise push every other
// tenant's retries out and be all the models learn from. It holds at most
// lo.maxExamples + lo.maxPerNS retries: EachRetry passes the templates of a
// namespace together (their keys are namespace/template, in byte order).
func ledgerExamples(cmd *cobra.Command, store *ledger.Store, lo *ledgerTrainOptions, now time.Time) ([]*ledgerRetry, error) {
	since, err := parseSince(lo.since, now)
	if err != nil {
		return nil, err
	}
	until := now
	if lo.until != "" {
		if until, err = time.Parse(time.RFC3339Nano, lo.until); err != nil {
			return nil, fmt.Errorf("--until: %q is not an RFC 3339 time", lo.until)
		}
	}
	if !since.IsZero() && !since.Before(until) {
		return nil, fmt.Errorf("--since %s is not before --until %s", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	keep := &latestRetries{cap: lo.maxExamples}
	ns := &latestRetries{cap: lo.maxPerNS}
	var (
		nsName  string
		capped  []string // namespaces past lo.maxPerNS
		pastCap int
	)
	flush := func() {
		for _, d := range ns.items {
			keep.add(d)
		}
		if ns.dropped > 0 {
			capped, pastCap = append(capped, nsName), pastCap+ns.dropped
		}
		ns = &latestRetries{cap: lo.maxPerNS}
	}
	stats, err := store.EachRetry(cmd.Context(), ledger.RetryFilter{Since: since, Until: until, HistoryLimit: lo.history},
		func(r *ledger.Retry) error {
			if r.Event.Job.Namespace != nsName {
				flush()
				nsName = r.Event.Job.Namespace
			}
			ns.add(&ledgerRetry{at: r.ReceivedAt, id: r.EventID, ex: models.Example{Event: r.Event, Category: r.Category,
				History: r.History, Option: r.Option, Outcome: r.Outcome, Result: r.Result}})
			return nil
		})
	if err != nil {
		return nil, err
	}
	flush()
	items := keep.items
	slices.SortFunc(items, func(a, b *ledgerRetry) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	w := cmd.OutOrStdout()
	window := "received before " + until.UTC().Format(time.RFC3339)
	if !since.IsZero() {
		window = "received from " + since.UTC().Format(time.RFC3339) + " to " + until.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "the ledger: %d remediations whose attempt succeeded or failed, %s\n", stats.Retries, window)
	if stats.Unreadable+stats.NoOutcome+keep.dropped > 0 {
		fmt.Fprintf(w, "left out: %d unreadable, %d without the attempt's outcome, %d older than the latest --max-examples %d\n",
			stats.Unreadable, stats.NoOutcome, keep.dropped, lo.maxExamples)
	}
	if pastCap > 0 {
		names := strings.Join(capped[:min(len(capped), 5)], ", ")
		if len(capped) > 5 {
			names += fmt.Sprintf(" and %d more", len(capped)-5)
		}
		fmt.Fprintf(w, "left out: %d retries past the latest --max-per-namespace %d of their namespace (%s)\n", pastCap, lo.maxPerNS, names)
	}
	return items, nil
}

// trainFromLedger trains on the ledger's retries, the earliest for training (with
// the simulated ones, if any) and the latest for evaluation.
func trainFromLedger(cmd *cobra.Command, o *trainOptions, lo *ledgerTrainOptions) error {
	cfg, err := lo.cf.load(cmd)
	if err != nil {
		return err
	}
	prior, err := loadModels(lo.prior)
	if err != nil {
		return fmt.Errorf("--models: %w", err)
	}
	store, err := lo.cf.openLedger(cmd)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	items, err := ledgerExamples(cmd, store, lo, time.Now())
	if err != nil {
		return err
	}
	n := len(items)
	nTrain := splitByTime(items, lo.testShare)
	if nTrain < 1 || nTrain >= n {
		return fmt.Errorf("%d retries, received at %d different times: too few to train on the earlier and evaluate on the later", n, receivedTimes(items))
	}
	examples := make([]models.Example, n, n+lo.withSim)
	for i, d := range items {
		examples[i] = d.ex
	}
	name := fmt.Sprintf("ledger-%s-%dex", items[n-1].at.UTC().Format("20060102T150405Z"), n)
	simulated := 0
	if lo.withSim > 0 {
		s, err := o.loadScenario()
		if err != nil {
			return err
		}
		sim, telemetry, err := simulateTelemetries(s, lo.withSim, o.telemetry)
		if err != nil {
			return err
		}
		examples, simulated = append(examples, sim...), len(sim)
		name += fmt.Sprintf("+%s-seed%d-%s-%dex", s.Name, s.Seed, telemetry, simulated)
	}
	m, err := models.Train(examples, &cfg.Catalogue, models.TrainOptions{Name: name, Prior: prior,
		HeldOut: func(i int) bool { return i >= nTrain && i < n }})
	if err != nil {
		return err
	}
	m.Evaluation.Window = &models.Window{TrainFrom: items[0].at, TrainTo: items[nTrain-1].at,
		TestFrom: items[nTrain].at, TestTo: items[n-1].at, Simulated: simulated}
	return reportTraining(cmd.OutOrStdout(), m, examples, o)
}

// splitByTime returns how many of items (oldest first) train: all but the latest
// share, and none received at the same instant as one evaluated on.
func splitByTime(items []*ledgerRetry, testShare float64) int {
	n := len(items)
	k := min(n-1, int(math.Floor(float64(n)*(1-testShare))))
	for k > 0 && k < n && items[k-1].at.Equal(items[k].at) {
		k--
	}
	return k
}

func receivedTimes(items []*ledgerRetry) int {
	d := 0
	for i := range items {
		if i == 0 || !items[i].at.Equal(items[i-1].at) {
			d++
		}
	}
	return d
}

// reportTraining prints the evaluation and writes the artifact and the examples as asked.
func reportTraining(w io.Writer, m *models.Models, examples []models.Example, o *trainOptions) error {
	fmt.Fprintln(w)
	m.Evaluation.Write(w)
	if o.dump != "" {
		if err := writeExamples(o.dump, examples); err != nil {
			return err
		}
	}
	if o.out == "" {
		return nil
	}
	return writeModels(w, m, o.out)
}
