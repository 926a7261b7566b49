package simcluster

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/autofix/autofix/telemetry"
)

// peakOf asks the cluster's metrics API for the peak of series over the run of
// job's one pod, as the watcher would, and returns it in the metric's unit ("" when
// there is none).
func peakOf(t *testing.T, c *Cluster, kube kubernetes.Interface, series telemetry.Series, job string) string {
	t.Helper()
	pods, err := kube.CoreV1().Pods("ml").List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of %s: %v, %v", job, pods, err)
	}
	p := pods.Items[0]
	term := p.Status.ContainerStatuses[0].State.Terminated
	q := telemetry.Query{Namespace: "ml", Pods: []string{p.Name}, Container: p.Spec.Containers[0].Name,
		Start: p.Status.StartTime.Time, End: term.FinishedAt.Time}
	form := url.Values{"query": {series.Expr(&q)}, "time": {strconv.FormatFloat(float64(q.End.UnixNano())/1e9, 'f', -1, 64)}}
	w := httptest.NewRecorder()
	c.MetricsAPI().ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/query?"+form.Encode(), nil))
	var answer struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || w.Code != 200 {
		t.Fatalf("query %s: %d %s", form.Get("query"), w.Code, w.Body.String())
	}
	if len(answer.Data.Result) == 0 {
		return ""
	}
	return answer.Data.Result[0].Value[1].(string)
}

// TestPodsExposeTheirPeaks: each pod's series hold what its truth says it used: an
// OOMKilled pod its limit, one that fits its need, a CUDA OOM all but the GPU
// memory the error says is free; a need the truth does not name has no series.
// They outlast a restart of the cluster.
func TestPodsExposeTheirPeaks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.json")
	synctest.Test(t, func(t *testing.T) {
		c, kube, stop := start(t, path)
		ctx := context.Background()
		gpuJob := func(name, microBatch string) *batchv1.Job {
			j := job(name, "32Gi", map[string]string{TruthGPUBase: "12Gi", TruthGPUPerSample: "448Mi"})
			spec := &j.Spec.Template.Spec
			spec.NodeSelector = map[string]string{"gpu": "a100-40gb"}
			spec.Containers[0].Env = []corev1.EnvVar{{Name: "MICRO_BATCH_SIZE", Value: microBatch}}
			spec.Containers[0].Resources.Limits["nvidia.com/gpu"] = resource.MustParse("1")
			return j
		}
		for _, j := range []*batchv1.Job{
			job("oom", "16Gi", map[string]string{TruthMemory: "20Gi"}),
			job("fits", "24Gi", map[string]string{TruthMemory: "20Gi", TruthStorage: "30Gi"}),
			job("no-truth", "8Gi", map[string]string{}),
			gpuJob("cuda-oom", "64"), // 12Gi + 64 x 448Mi = 40Gi on a 40 GB GPU
			gpuJob("gpu-fits", "32"), // 26Gi
		} {
			if _, err := kube.BatchV1().Jobs("ml").Create(ctx, j, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		ended := func() bool {
			for _, name := range []string{"oom", "fits", "no-truth", "cuda-oom", "gpu-fits"} {
				j, err := kube.BatchV1().Jobs("ml").Get(ctx, name, metav1.GetOptions{})
				if c, _ := condition(j); err != nil || c == "" {
					return false
				}
			}
			return true
		}
		waitFor(t, "the jobs to end", 10*time.Second, ended)
		mem, gpu, disk := telemetry.DefaultMemory(), telemetry.DefaultGPUMemory(), telemetry.DefaultEphemeralStorage()
		tests := []struct {
			job    string
			series telemetry.Series
			want   string
		}{
			{"oom", mem, strconv.FormatInt(16<<30, 10)},
			{"fits", mem, strconv.FormatInt(20<<30, 10)},
			{"fits", disk, strconv.FormatInt(30<<30, 10)},
			{"oom", disk, ""},
			{"no-truth", mem, ""},
			{"cuda-oom", gpu, "39834"}, // (40 - 1.10) GiB, in whole MiB
			{"gpu-fits", gpu, "26624"},
			{"oom", gpu, ""},
		}
		check := func(when string) {
			for _, tt := range tests {
				if got := peakOf(t, c, kube, tt.series, tt.job); got != tt.want {
					t.Errorf("%s: %s of %s = %q, want %q", when, tt.series.Metric, tt.job, got, tt.want)
				}
			}
		}
		check("running")
		stop()
		c, kube, _ = start(t, path)
		check("after a restart")
	})
}
