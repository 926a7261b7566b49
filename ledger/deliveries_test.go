package ledger

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func enqueue(t *testing.T, s *Store, webhook, id string, kind DeliveryKind, at time.Time) bool {
	t.Helper()
	queued, err := s.EnqueueDelivery(context.Background(), Delivery{Webhook: webhook, EventID: id, Kind: kind,
		Payload: []byte(`{"kind":"` + string(kind) + `"}`), CreatedAt: at})
	if err != nil {
		t.Fatalf("EnqueueDelivery(%s, %s, %s) = %v", webhook, id, kind, err)
	}
	return queued
}

func deliveryStates(t *testing.T, s *Store, id string) map[string]Delivery {
	t.Helper()
	ds, err := s.Deliveries(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Delivery{}
	for _, d := range ds {
		out[d.Webhook+"/"+string(d.Kind)] = d
	}
	return out
}

// TestDeliveriesAreSentOnce: a webhook has one message of each kind about a
// remediation however often it is queued; the due ones come earliest first; an
// attempt's result is recorded; an ended message supersedes what is still queued.
func TestDeliveriesAreSentOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("a", PendingReview, entryOpt{}), entry("b", PendingReview, entryOpt{}))
		if !enqueue(t, s, "chat", "a", DeliveryPending, t0) || enqueue(t, s, "chat", "a", DeliveryPending, t0.Add(time.Second)) {
			t.Fatal("the second pending message of chat about a was queued too, or the first was not")
		}
		enqueue(t, s, "chat", "b", DeliveryPending, t0.Add(time.Second))
		enqueue(t, s, "pager", "a", DeliveryPending, t0.Add(2*time.Second))

		due, err := s.DueDeliveries(ctx, "chat", t0.Add(time.Minute), 10)
		if err != nil || len(due) != 2 || due[0].EventID != "a" || due[1].EventID != "b" || string(due[0].Payload) != `{"kind":"pending"}` {
			t.Fatalf("DueDeliveries(chat) = %+v, %v; want a's then b's pending message", due, err)
		}
		// a's fails and is to be tried in a minute; b's is delivered.
		if err := s.RecordDelivery(ctx, "chat", "a", DeliveryPending, DeliveryResult{At: t0.Add(time.Minute), Status: DeliveryQueued,
			NextAt: t0.Add(2 * time.Minute), HTTPStatus: 503, Err: "503 Service Unavailable"}); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordDelivery(ctx, "chat", "b", DeliveryPending, DeliveryResult{At: t0.Add(time.Minute), Status: DeliveryDelivered,
			HTTPStatus: 204}); err != nil {
			t.Fatal(err)
		}
		if due, _ := s.DueDeliveries(ctx, "chat", t0.Add(90*time.Second), 10); len(due) != 0 {
			t.Errorf("DueDeliveries before a's retry = %+v, want none", due)
		}
		if due, _ := s.DueDeliveries(ctx, "chat", t0.Add(2*time.Minute), 10); len(due) != 1 || due[0].Attempts != 1 || due[0].HTTPStatus != 503 {
			t.Errorf("DueDeliveries at a's retry = %+v, want a's message after 1 attempt (503)", due)
		}

		// a is rejected: chat and pager are to be told, once.
		if err := s.Reject(ctx, "a", "ada", "no", t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, hook := range []string{"chat", "pager"} {
			if ids, err := s.EndedReviews(ctx, hook, 10); err != nil || len(ids) != 1 || ids[0] != "a" {
				t.Fatalf("EndedReviews(%s) = %v, %v; want [a]", hook, ids, err)
			}
		}
		enqueue(t, s, "chat", "a", DeliveryEnded, t0.Add(3*time.Minute))
		if ids, _ := s.EndedReviews(ctx, "chat", 10); len(ids) != 0 {
			t.Errorf("EndedReviews(chat) after its ended message = %v, want none", ids)
		}
		got := deliveryStates(t, s, "a")
		if got["chat/pending"].Status != DeliverySuperseded || got["chat/ended"].Status != DeliveryQueued ||
			got["pager/pending"].Status != DeliveryQueued {
			t.Errorf("a's messages = %+v; want chat's pending superseded, chat's ended and pager's pending queued", got)
		}
		// An attempt that was under way when it was superseded: failing leaves it
		// superseded, delivering records it delivered.
		if err := s.RecordDelivery(ctx, "chat", "a", DeliveryPending, DeliveryResult{Status: DeliveryQueued, NextAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if d := deliveryStates(t, s, "a")["chat/pending"]; d.Status != DeliverySuperseded || d.Attempts != 2 {
			t.Errorf("a superseded message after a failed attempt = %s after %d attempts, want superseded after 2", d.Status, d.Attempts)
		}
		if err := s.RecordDelivery(ctx, "chat", "a", DeliveryPending, DeliveryResult{Status: DeliveryDelivered, HTTPStatus: 200}); err != nil {
			t.Fatal(err)
		}
		if d := deliveryStates(t, s, "a")["chat/pending"]; d.Status != DeliveryDelivered || d.LastError != "" {
			t.Errorf("a superseded message delivered after all = %s (%q), want delivered", d.Status, d.LastError)
		}
		// A delivered message is not changed by a late attempt of another replica.
		if err := s.RecordDelivery(ctx, "chat", "b", DeliveryPending, DeliveryResult{Status: DeliveryFailed, Err: "late"}); err != nil {
			t.Fatal(err)
		}
		if d := deliveryStates(t, s, "b")["chat/pending"]; d.Status != DeliveryDelivered || d.Attempts != 1 {
			t.Errorf("a delivered message after a late failure = %s after %d attempts, want delivered after 1", d.Status, d.Attempts)
		}
	})
}

// TestDeliveriesRefuseWhatCannotBeARow: the error names the field, and a
// remediation the ledger does not hold is ErrNotFound.
func TestDeliveriesRefuseWhatCannotBeARow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustRecord(t, s, entry("a", PendingReview, entryOpt{}))
		ok := Delivery{Webhook: "chat", EventID: "a", Kind: DeliveryPending, Payload: []byte("{}")}
		tests := []struct {
			name  string
			edit  func(d *Delivery)
			field string
		}{
			{"no webhook", func(d *Delivery) { d.Webhook = "" }, "webhook"},
			{"a long webhook name", func(d *Delivery) { d.Webhook = strings.Repeat("w", 64) }, "webhook"},
			{"another kind", func(d *Delivery) { d.Kind = "approved" }, "kind"},
			{"no payload", func(d *Delivery) { d.Payload = nil }, "payload"},
			{"a payload too large", func(d *Delivery) { d.Payload = make([]byte, MaxDeliveryPayload+1) }, "payload"},
			{"a payload that is not UTF-8", func(d *Delivery) { d.Payload = []byte{0xff} }, "payload"},
		}
		for _, tt := range tests {
			d := ok
			tt.edit(&d)
			if _, err := s.EnqueueDelivery(context.Background(), d); err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("%s: EnqueueDelivery = %v, want an error naming %s", tt.name, err, tt.field)
			}
		}
		d := ok
		d.EventID = "nobody"
		if _, err := s.EnqueueDelivery(context.Background(), d); !errors.Is(err, ErrNotFound) {
			t.Errorf("EnqueueDelivery of an unknown remediation = %v, want ErrNotFound", err)
		}
		long := strings.Repeat("é", maxDeliveryError)
		if err := s.RecordDelivery(context.Background(), "chat", "a", DeliveryPending, DeliveryResult{Status: DeliveryQueued, Err: long}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.EnqueueDelivery(context.Background(), ok); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordDelivery(context.Background(), "chat", "a", DeliveryPending, DeliveryResult{Status: DeliveryQueued, Err: long}); err != nil {
			t.Fatal(err)
		}
		if d := deliveryStates(t, s, "a")["chat/pending"]; len(d.LastError) > maxDeliveryError || !strings.HasPrefix(long, d.LastError) {
			t.Errorf("a long error is recorded as %d bytes, want it clipped to at most %d at a character", len(d.LastError), maxDeliveryError)
		}
	})
}

// TestPruneDeletesDeliveries: a pruned remediation's webhook messages go with it.
func TestPruneDeletesDeliveries(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("a", PendingReview, entryOpt{}))
		enqueue(t, s, "chat", "a", DeliveryPending, t0)
		if err := s.Reject(ctx, "a", "ada", "no", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		enqueue(t, s, "chat", "a", DeliveryEnded, t0.Add(time.Minute))
		if n, err := s.Prune(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
			t.Fatalf("Prune = %d, %v; want 1", n, err)
		}
		if ds, err := s.Deliveries(ctx, "a"); err != nil || len(ds) != 0 {
			t.Errorf("Deliveries(a) after pruning = %+v, %v; want none", ds, err)
		}
	})
}

// TestDueDeliveriesInTheOrderTheyHappen: messages about one review queued at one
// time come pending, escalated, ended, whatever their names' order.
func TestDueDeliveriesInTheOrderTheyHappen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustRecord(t, s, entry("a", PendingReview, entryOpt{}))
		enqueue(t, s, "chat", "a", DeliveryEscalated, t0)
		enqueue(t, s, "chat", "a", DeliveryPending, t0)
		due, err := s.DueDeliveries(context.Background(), "chat", t0, 10)
		if err != nil || len(due) != 2 || due[0].Kind != DeliveryPending || due[1].Kind != DeliveryEscalated {
			t.Errorf("DueDeliveries = %+v, %v; want the pending message, then the escalated one", due, err)
		}
		if ds, _ := s.Deliveries(context.Background(), "a"); len(ds) != 2 || ds[0].Kind != DeliveryPending {
			t.Errorf("Deliveries = %+v, want the pending message first", ds)
		}
	})
}

// TestDeliveriesAfterTheEndAreNotSent: a pending or escalated message queued after
// its review ended (a replica that read the review as pending before another
// queued its end) is recorded superseded, never due; the end is queued.
func TestDeliveriesAfterTheEndAreNotSent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustRecord(t, s, entry("a", PendingReview, entryOpt{}))
		if err := s.Reject(ctx, "a", "ada", "no", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		enqueue(t, s, "chat", "a", DeliveryEnded, t0.Add(2*time.Minute))
		enqueue(t, s, "chat", "a", DeliveryEscalated, t0.Add(3*time.Minute))
		got := deliveryStates(t, s, "a")
		if got["chat/escalated"].Status != DeliverySuperseded || got["chat/ended"].Status != DeliveryQueued {
			t.Errorf("a's messages = %+v; want the escalated one superseded, the ended one queued", got)
		}
		if due, _ := s.DueDeliveries(ctx, "chat", t0.Add(time.Hour), 10); len(due) != 1 || due[0].Kind != DeliveryEnded {
			t.Errorf("DueDeliveries = %+v, want only the ended message", due)
		}
	})
}

// TestEndedReviewsReadsOpenRowsOnly: the lookup of reviews whose end is to be told
// goes through the index of open rows (on SQLite, whose plan the test can read), so
// its cost does not grow with the reviews that ended long ago. Before, it scanned
// every pending message the webhook was ever sent: 75-95 ms a round at 50,000.
func TestEndedReviewsReadsOpenRowsOnly(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "ledger.db"))
	rows, err := s.r.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+endedReviewsQuery, "w", "pending", "pending_review", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if !strings.Contains(strings.Join(plan, "\n"), "deliveries_open") {
		t.Errorf("the plan of EndedReviews' query does not use deliveries_open:\n%s", strings.Join(plan, "\n"))
	}
}

// BenchmarkEndedReviews: the lookup a webhook's round makes every 5 s, over a ledger
// of 20,000 reviews whose ends were told and 20 still pending.
func BenchmarkEndedReviews(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "ledger.db"))
	ctx := context.Background()
	const n = 20000
	var entries []Entry
	for i := range n + 20 {
		entries = append(entries, entry(fmt.Sprintf("ev-%05d", i), PendingReview, entryOpt{}))
	}
	mustRecord(b, s, entries...)
	for i := range n + 20 {
		id := fmt.Sprintf("ev-%05d", i)
		if _, err := s.EnqueueDelivery(ctx, Delivery{Webhook: "chat", EventID: id, Kind: DeliveryPending, Payload: []byte("{}"), CreatedAt: t0}); err != nil {
			b.Fatal(err)
		}
		if i >= n {
			continue
		}
		if err := s.Reject(ctx, id, "ada", "no", t0.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.EnqueueDelivery(ctx, Delivery{Webhook: "chat", EventID: id, Kind: DeliveryEnded, Payload: []byte("{}"), CreatedAt: t0.Add(time.Minute)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if ids, err := s.EndedReviews(ctx, "chat", 100); err != nil || len(ids) != 0 {
			b.Fatalf("EndedReviews = %v, %v", ids, err)
		}
	}
}
