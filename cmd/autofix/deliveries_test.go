package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/ledger/ledgertest"
)

// TestLedgerDeliveries: the command prints a remediation's webhook messages with
// their status, as a table and as JSON lines.
func TestLedgerDeliveries(t *testing.T) {
	ledgertest.ForEachDSN(t, func(tb testing.TB, dsn string) {
		t := tb.(*testing.T)
		ctx := context.Background()
		store, err := ledger.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = store.Close() }()
		recordEvents(t, store, correctionEvent(t, "ev-a", "Killed"))
		at := correctedAt
		for _, hook := range []string{"oncall", "chat"} {
			if _, err := store.EnqueueDelivery(ctx, ledger.Delivery{Webhook: hook, EventID: "ev-a", Kind: ledger.DeliveryPending,
				Payload: []byte("{}"), CreatedAt: at}); err != nil {
				t.Fatal(err)
			}
		}
		if err := store.RecordDelivery(ctx, "oncall", "ev-a", ledger.DeliveryPending, ledger.DeliveryResult{At: at.Add(time.Second),
			Status: ledger.DeliveryQueued, NextAt: at.Add(6 * time.Second), HTTPStatus: 503, Err: "503 Service Unavailable: busy"}); err != nil {
			t.Fatal(err)
		}
		if err := store.RecordDelivery(ctx, "chat", "ev-a", ledger.DeliveryPending, ledger.DeliveryResult{At: at.Add(time.Second),
			Status: ledger.DeliveryDelivered, HTTPStatus: 200}); err != nil {
			t.Fatal(err)
		}

		code, out, errOut := runCmd(t, "", append([]string{"ledger", "deliveries", "ev-a"}, ledgerArgs(dsn)...)...)
		want := [][]string{
			{"WEBHOOK", "MESSAGE", "STATUS", "ATTEMPTS", "LAST", "ANSWER", "NEXT"},
			{"chat", "pending", "delivered", "1", "200"},
			{"oncall", "pending", "queued", "1", "503", "Service", "Unavailable:", "busy", "2026-03-01T12:00:06Z"},
		}
		var got [][]string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			got = append(got, strings.Fields(line))
		}
		if code != 0 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ledger deliveries: exit %d, stderr %q, output\n%s\nwant the rows %q", code, errOut, out, want)
		}
		code, out, _ = runCmd(t, "", append([]string{"ledger", "deliveries", "ev-a", "--json"}, ledgerArgs(dsn)...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var l deliveryLine
		if code != 0 || len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &l) != nil || l.Webhook != "oncall" || l.Status != "queued" ||
			l.NextAt == nil || !l.NextAt.Equal(at.Add(6*time.Second)) || l.HTTPStatus != 503 {
			t.Errorf("ledger deliveries --json: exit %d, output %q; want two lines, oncall's queued with its next attempt", code, out)
		}
	})
}
