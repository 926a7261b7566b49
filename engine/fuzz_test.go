package engine

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autofix/autofix/ingest"
	"github.com/autofix/autofix/ledger"
	"github.com/autofix/autofix/policy"
)

// FuzzIntake feeds arbitrary sequences of messages (the input split at newlines,
// each line a message value, the first byte of a line choosing its partition)
// through Intake and a real ledger, and checks that the loop never stalls: no
// sequence makes Handle fail, and after any sequence a valid event is recorded.
func FuzzIntake(f *testing.F) {
	for _, seed := range [][]byte{
		[]byte(`{"id":"a","job":{"name":"j"},"failure":{"reason":"OOMKilled"}}`),
		[]byte(`{"id":"t","job":{"name":"j","namespace":"ml"},"failure":{"reason":"DeadlineExceeded","durationSeconds":1e308}}`),
		[]byte("{\"id\":\"x\"\n[]\nnull\n{}\n\xff\xfe"),
		[]byte(`{"id":"kafka:f/0/1","job":{"name":"j"},"failure":{}}` + "\n" + `{"id":"kafka:f/0/1","job":{"name":"j"},"failure":{}}`),
		[]byte(`{"id":"p","job":{"name":"j","params":{"mb":"9999999999999"},"tunables":{"mb":{"role":"micro_batch","max":1e300}}},"failure":{}}`),
		[]byte(`{"id":"d","job":{"name":"j","resources":{"memory":"8Ei","cpu":"1e9"}},"failure":{"usage":{"peakMemory":"1e400"}}}`),
	} {
		f.Add(seed)
	}
	store, err := ledger.Open(context.Background(), filepath.Join(f.TempDir(), "ledger.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	pol := policy.Default()
	in := &Intake{Ledger: store, Recommender: sharedRecommender(f), Policy: &pol}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		round := n.Add(1)
		var batch []ingest.Message
		for i, line := range bytes.Split(data, []byte("\n")) {
			p := 0
			if len(line) > 0 {
				p = int(line[0] % 3)
			}
			batch = append(batch, ingest.Message{Topic: "fuzz", Partition: p, Offset: round*10000 + int64(i), Value: line, Time: time.Now()})
		}
		ctx := context.Background()
		if _, err := in.Handle(ctx, batch); err != nil {
			t.Fatalf("Handle(%q) = %v: the batch would be handed again forever", data, err)
		}
		id := fmt.Sprintf("after-%d", round)
		valid := []byte(`{"id":"` + id + `","job":{"namespace":"ml","name":"etl"},"failure":{"reason":"OOMKilled","exitCode":137}}`)
		if _, err := in.Handle(ctx, []ingest.Message{{Topic: "fuzz", Offset: round*10000 + 9999, Value: valid, Time: time.Now()}}); err != nil {
			t.Fatalf("a valid event after %q: %v", data, err)
		}
		if _, err := store.Get(ctx, id); err != nil {
			t.Fatalf("a valid event after %q is not recorded: %v", data, err)
		}
	})
}
