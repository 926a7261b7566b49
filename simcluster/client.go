package simcluster

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
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
// a queue of any length.
type drained struct {
	src  watch.Interface
	out  chan watch.Event
	stop chan struct{}
	once sync.Once
}

func drain(src watch.Interface) *drained {
	d := &drained{src: src, out: make(chan watch.Event), stop: make(chan struct{})}
	go func() {
		defer close(d.out)
		in := src.ResultChan()
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

func (d *drained) Stop() {
	d.once.Do(func() {
		d.src.Stop()
		close(d.stop)
	})
}

func (d *drained) ResultChan() <-chan watch.Event { return d.out }
