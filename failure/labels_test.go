package failure

import (
	"strings"
	"testing"
)

func TestAttemptNameFitsKubernetes(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, c := range []struct {
		original string
		n        int
		want     string
	}{
		{"resnet-train", 2, "resnet-train-af2"},
		{"resnet-train", 10, "resnet-train-af10"},
	} {
		if got := AttemptName(c.original, c.n); got != c.want {
			t.Errorf("AttemptName(%q, %d) = %q, want %q", c.original, c.n, got, c.want)
		}
	}
	a, b := AttemptName(long, 2), AttemptName(long[:62]+"b", 2)
	if len(a) > 63 || !strings.HasSuffix(a, "-af2") || a == b {
		t.Errorf("long names: %q and %q; want at most 63 characters, the attempt suffix, and different names", a, b)
	}
}

func TestChainIDAndOriginal(t *testing.T) {
	id := ChainID("ml", "resnet")
	if id != "ml/resnet" || ChainOriginal(id, "ml", "x") != "resnet" {
		t.Errorf("ChainID %q, ChainOriginal %q", id, ChainOriginal(id, "ml", "x"))
	}
	// A chain of another namespace, or not of the form, gives the fallback.
	for _, chain := range []string{"other/resnet", "resnet", "ml/", ""} {
		if got := ChainOriginal(chain, "ml", "fallback"); got != "fallback" {
			t.Errorf("ChainOriginal(%q, ml) = %q, want the fallback", chain, got)
		}
	}
}

func TestHistoryAndPartitionKeys(t *testing.T) {
	ev := &Event{Job: Job{Namespace: "ml", Name: "etl-7", Template: "etl"}}
	if got := ev.HistoryKey(); got != "ml/etl" {
		t.Errorf("HistoryKey = %q", got)
	}
	ev.Job.Template = ""
	if got := ev.HistoryKey(); got != "ml/etl-7" {
		t.Errorf("HistoryKey without a template = %q, want the job's name", got)
	}
	if got := PartitionKey(ev); got != "ml/etl-7" {
		t.Errorf("PartitionKey = %q", got)
	}
	ev.Job.Labels = map[string]string{LabelOriginal: "etl"}
	if got := PartitionKey(ev); got != "ml/etl" {
		t.Errorf("PartitionKey of an attempt = %q, want its chain's", got)
	}
}
