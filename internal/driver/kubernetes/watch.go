package kubernetes

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/kiln-build/kiln/internal/driver"
)

// watchBuffer is how many events a watch holds for a slow reader; more are dropped
// (the reader resyncs with List, as driver.Watcher says).
const watchBuffer = 1024

// watcher is the driver's one pod informer, started by the first Watch and stopped
// by Close, and the watches it feeds.
type watcher struct {
	mu      sync.Mutex
	started bool
	stop    chan struct{}
	subs    map[chan driver.Event]struct{}
	// pods is the informer's cache of the project's pods, once it has listed them (nil
	// before): what Ready reads instead of asking the API server for each pod.
	pods cache.Indexer
	inf  cache.SharedIndexInformer
}

// Watch reports the pods kiln manages in the project as they start, stop (their
// container exits, in place or not, or the pod is being deleted) and are removed, from
// one informer of the driver's namespace that every watch shares. The pods there when
// the informer started are not reported. With OptionAuditLog, it also reports exec,
// attach and port-forward into them as EventExec, from the lines the API server logs
// after the informer started, or after the last run stopped reading (audit.go). The channel is closed when ctx ends or the
// driver is closed.
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Event, error) {
	w := &d.watch
	ch := make(chan driver.Event, watchBuffer)
	w.mu.Lock()
	if !w.started {
		if err := d.startInformer(); err != nil {
			w.mu.Unlock()
			return nil, err
		}
	}
	stop := w.stop
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		w.mu.Lock()
		if _, ok := w.subs[ch]; ok {
			delete(w.subs, ch)
			close(ch)
		}
		w.mu.Unlock()
	}()
	return ch, nil
}

// startInformer starts the shared informer; d.watch.mu is held.
func (d *Driver) startInformer() error {
	w := &d.watch
	factory := informers.NewSharedInformerFactoryWithOptions(d.cs, 0, informers.WithNamespace(d.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector(d.project, "") }))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*corev1.Pod)
			p, ok2 := newObj.(*corev1.Pod)
			if !ok1 || !ok2 {
				return
			}
			was, is := running(old), running(p)
			switch {
			case !was && is:
				d.publish(p, driver.EventStart, "")
			case was && !is, restarts(p) > restarts(old):
				d.publish(p, driver.EventDie, exitDetail(p))
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				d.publish(p, driver.EventDestroy, "")
				d.kubelets.forget(p.UID)
			}
		},
	})
	if err != nil {
		return err
	}
	w.stop, w.subs, w.started, w.inf = make(chan struct{}), map[chan driver.Event]struct{}{}, true, inf
	stop := w.stop
	factory.Start(stop)
	if d.auditLog != "" {
		// Opened here, not in the goroutine: what is logged once Watch returns is news.
		// A log that cannot be opened now is followAudit's to warn of and retry.
		t, _ := follow(d.auditLog, d.auditState)
		go d.followAudit(t, stop)
	}
	go func() {
		if cache.WaitForCacheSync(stop, inf.HasSynced) {
			w.mu.Lock()
			w.pods = inf.GetIndexer()
			w.mu.Unlock()
		}
		<-stop
		factory.Shutdown()
	}()
	return nil
}

// cached is pod name as the informer last saw it, started if need be; ok is false
// while the informer has not listed the pods yet (ask the API server then). A pod
// the synced cache lacks is gone, or younger than the cache's last event.
func (d *Driver) cached(name string) (p *corev1.Pod, ok bool) {
	w := &d.watch
	w.mu.Lock()
	if !w.started {
		if err := d.startInformer(); err != nil {
			w.mu.Unlock()
			return nil, false
		}
	}
	w.mu.Unlock()
	return d.fromCache(name)
}

// fromCache is cached without starting the informer.
func (d *Driver) fromCache(name string) (p *corev1.Pod, ok bool) {
	w := &d.watch
	w.mu.Lock()
	pods := w.pods
	w.mu.Unlock()
	if pods == nil {
		return nil, false
	}
	obj, exists, err := pods.GetByKey(d.namespace + "/" + name)
	if err != nil || !exists {
		return nil, true
	}
	p, _ = obj.(*corev1.Pod)
	return p, p != nil
}

// publish sends an event about pod p to every watch.
func (d *Driver) publish(p *corev1.Pod, typ driver.EventType, detail string) {
	s := serverOf(p)
	d.send(driver.Event{Type: typ, ServerID: s.ID, Project: s.Project, Service: s.Service, Detail: detail, Time: time.Now()})
}

// send sends ev to every watch, without blocking: a full watch misses it.
func (d *Driver) send(ev driver.Event) {
	w := &d.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// closeWatch stops the informer and closes every watch.
func (d *Driver) closeWatch() {
	w := &d.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		close(w.stop)
		for ch := range w.subs {
			delete(w.subs, ch)
			close(ch)
		}
		w.started, w.pods = false, nil
	}
}

// running reports whether the pod's server is running.
func running(p *corev1.Pod) bool { return stateOf(p) == driver.StateRunning }

func restarts(p *corev1.Pod) int32 {
	if cs := containerStatus(p); cs != nil {
		return cs.RestartCount
	}
	return 0
}

// exitDetail is how the pod's container last ended, "" when the pod says nothing.
func exitDetail(p *corev1.Pod) string {
	cs := containerStatus(p)
	if cs == nil {
		return ""
	}
	t := cs.State.Terminated
	if t == nil {
		t = cs.LastTerminationState.Terminated
	}
	if t == nil {
		return ""
	}
	return driver.Exit{Code: int(t.ExitCode), OOMKilled: t.Reason == "OOMKilled", Error: t.Message}.String()
}
