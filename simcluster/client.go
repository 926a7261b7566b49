package simcluster

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	restclient "k8s.io/client-go/rest"
	fakerest "k8s.io/client-go/rest/fake"
)

// client is the fake clientset with the pods/log API served from the kubelet (the
// fake's own answers "fake logs" and does not say which pod was asked for).
type client struct {
	*fake.Clientset
	kubelet *Kubelet
}

func (c *client) CoreV1() typedcorev1.CoreV1Interface {
	return coreV1{c.Clientset.CoreV1(), c.kubelet}
}

type coreV1 struct {
	typedcorev1.CoreV1Interface
	kubelet *Kubelet
}

func (c coreV1) Pods(namespace string) typedcorev1.PodInterface {
	return pods{c.CoreV1Interface.Pods(namespace), namespace, c.kubelet}
}

type pods struct {
	typedcorev1.PodInterface
	namespace string
	kubelet   *Kubelet
}

// GetLogs serves the tail of what the kubelet says the container wrote.
func (p pods) GetLogs(name string, opts *corev1.PodLogOptions) *restclient.Request {
	log := p.kubelet.Log(p.namespace, name)
	if opts != nil && opts.TailLines != nil {
		lines := strings.Split(log, "\n")
		if n := int(*opts.TailLines); n >= 0 && n < len(lines) {
			log = strings.Join(lines[len(lines)-n:], "\n")
		}
	}
	if opts != nil && opts.LimitBytes != nil && int64(len(log)) > *opts.LimitBytes {
		log = log[:*opts.LimitBytes]
	}
	rc := &fakerest.RESTClient{
		Client: fakerest.CreateHTTPClient(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader([]byte(log)))}, nil
		}),
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		GroupVersion:         corev1.SchemeGroupVersion,
		VersionedAPIPath:     fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/log", p.namespace, name),
	}
	return rc.Request()
}

// drained is a watch that never makes its source wait: the fake tracker's watchers
// hold 100 events and panic when full, so a goroutine moves each event at once into
// a queue of any length, and every write first waits until each drain has taken
// what its source holds (see drains.settle).
type drained struct {
	src    watch.Interface
	in     <-chan watch.Event // src's
	out    chan watch.Event
	stop   chan struct{}
	exited chan struct{} // closed when the goroutine has returned
	once   sync.Once
}

// drains are the live drains of a cluster's watches.
type drains struct {
	mu  sync.Mutex
	set map[*drained]struct{}
}

// drain starts draining src.
func (ds *drains) drain(src watch.Interface) *drained {
	d := &drained{src: src, in: src.ResultChan(), out: make(chan watch.Event), stop: make(chan struct{}), exited: make(chan struct{})}
	ds.mu.Lock()
	if ds.set == nil {
		ds.set = map[*drained]struct{}{}
	}
	ds.set[d] = struct{}{}
	ds.mu.Unlock()
	go func() {
		defer func() {
			ds.mu.Lock()
			delete(ds.set, d)
			ds.mu.Unlock()
			close(d.exited)
		}()
		defer close(d.out)
		in := d.in
		var queue []watch.Event
		for in != nil || len(queue) > 0 {
			var out chan watch.Event
			var next watch.Event
			if len(queue) > 0 {
				out, next = d.out, queue[0]
			}
			select {
			case ev, ok := <-in:
				if !ok {
					in = nil
					continue
				}
				queue = append(queue, ev)
			case out <- next:
				queue = queue[1:]
			case <-d.stop:
				return
			}
		}
	}()
	return d
}

// settle waits until every live drain has taken all that its source holds. Writes
// run one at a time (under the fake clientset's lock), each puts at most one event
// into a source, and each waits for this first: so a source never holds more than
// one event, however many goroutines write and however the scheduler runs them.
func (ds *drains) settle() {
	ds.mu.Lock()
	live := make([]*drained, 0, len(ds.set))
	for d := range ds.set {
		live = append(live, d)
	}
	ds.mu.Unlock()
	for _, d := range live {
		for len(d.in) > 0 && !d.done() {
			runtime.Gosched() // the drain's goroutine takes it without any lock the writer holds
		}
	}
}

func (d *drained) done() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

func (d *drained) Stop() {
	d.once.Do(func() {
		d.src.Stop()
		close(d.stop)
	})
}

func (d *drained) ResultChan() <-chan watch.Event { return d.out }
