package kubernetes

import (
	"context"
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

// Watch reports the pods kiln manages as they start, stop (their container exits, in
// place or not) and are removed, from an informer of the driver's namespace. The pods
// there when it starts are not reported. The channel is closed when ctx ends.
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Event, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(d.cs, 0, informers.WithNamespace(d.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector(d.project, "") }))
	inf := factory.Core().V1().Pods().Informer()
	ch := make(chan driver.Event, watchBuffer)
	ctx, cancel := context.WithCancel(ctx)
	send := func(p *corev1.Pod, typ driver.EventType, detail string) {
		s := serverOf(p)
		select {
		case ch <- driver.Event{Type: typ, ServerID: s.ID, Project: s.Project, Service: s.Service, Detail: detail, Time: time.Now()}:
		default:
		}
	}
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
				send(p, driver.EventStart, "")
			case was && !is, restarts(p) > restarts(old):
				send(p, driver.EventDie, exitDetail(p))
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				send(p, driver.EventDestroy, "")
			}
		},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(ch)
		defer factory.Shutdown()
		defer cancel()
		factory.Start(ctx.Done())
		<-ctx.Done()
	}()
	go func() { // the watch breaks if its list never syncs: the reader resyncs itself
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			cancel()
		}
	}()
	return ch, nil
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
