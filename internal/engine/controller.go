package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/monitor"
	"github.com/kiln-build/kiln/internal/store"
)

// Controller settings.
const (
	// DefaultResync is how often the controller re-reads desired and observed state
	// and checks every server for drift, events or not.
	DefaultResync = 5 * time.Second
	// A service healed crashLoopHeals times within healWindow is crash-looping: further
	// heals back off exponentially, up to maxBackoff.
	crashLoopHeals = 3
	healWindow     = time.Minute
	maxBackoff     = 5 * time.Minute
	// A revision that never deployed is tried failedAttempts more times, 2, 4, 8 and
	// 16 s apart, and then left alone until the next apply: its servers never once
	// became healthy, so more attempts would only recreate crashing servers.
	failedAttempts = 4
)

// serviceState is what the controller remembers of a service between passes. Nothing
// in it is needed for correctness after a restart: it only paces and explains heals.
type serviceState struct {
	lock     sync.Mutex // held by whoever changes the service's servers
	heals    []time.Time
	degraded bool
	// cause is why the service is degraded: the last failure of a heal or rollout.
	cause string
	// cancelHeal stops the heal in progress, if any: a rollout never waits behind one.
	cancelHeal context.CancelFunc
	// gaveUp: the current revision never deployed and has been tried failedAttempts
	// times; nothing is tried again until a revision deploys.
	gaveUp    bool
	flagged   map[driver.ServerID]reason // servers to replace, and why (exited, exec)
	reported  map[string]bool            // drift already reported (report mode)
	lastDrift string
	drifted   map[driver.ServerID]string // the last drift found in each server
	// driftReplaced is when a server was last replaced for each drift (its detail).
	driftReplaced map[string]time.Time
}

func (e *Engine) state(service string) *serviceState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.states[service]
	if st == nil {
		st = &serviceState{flagged: map[driver.ServerID]reason{}, reported: map[string]bool{}, drifted: map[driver.ServerID]string{},
			driftReplaced: map[string]time.Time{}}
		e.states[service] = st
	}
	return st
}

// The controller is three parts the engine starts (see Start): the runtime's events
// (watch), the health monitor (internal/monitor) and the reconcile loop
// (internal/reconcile), which heals one service per pass. Events and failed probes
// enqueue their service; every resync enqueues every service for a full pass (drift
// checks). A service is never healed by two passes at once, and no kick is dropped.

// healer is the engine as the reconcile loop's Reconciler.
type healer struct{ e *Engine }

// Reconcile heals one service: see Engine.heal. A service whose servers are being
// changed (a rollout, a re-adoption, a destroy) is left alone: the change converges it
// from what the runtime lists, and the next resync looks again (a server that died
// meanwhile stays flagged until then).
func (h healer) Reconcile(ctx context.Context, service string, full bool) (time.Duration, error) {
	e := h.e
	st := e.state(service)
	if !st.lock.TryLock() {
		return 0, nil
	}
	defer st.lock.Unlock()
	sv, err := e.opts.State.Service(ctx, service)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil // destroyed
	} else if err != nil {
		return 0, err
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	st.cancelHeal = cancel
	e.mu.Unlock()
	wait, err := e.heal(hctx, service, sv.Current, st, full)
	e.mu.Lock()
	st.cancelHeal = nil
	if err != nil && hctx.Err() == nil {
		st.cause = err.Error()
	}
	e.mu.Unlock()
	if err != nil && hctx.Err() == nil {
		e.event(service, "", "error", "healing: %v", err)
		return 0, err
	}
	return wait, nil
}

// serviceNames lists every service: the keys of a resync.
func (e *Engine) serviceNames(ctx context.Context) ([]string, error) {
	services, err := e.opts.State.Services(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(services))
	for i, sv := range services {
		names[i] = sv.Name
	}
	return names, nil
}

// watch turns runtime events into reconciliations, and execs into drift, until ctx
// ends.
func (e *Engine) watch(ctx context.Context) {
	w, ok := e.opts.Driver.(driver.Watcher)
	if !ok || !e.caps.Events {
		return // resyncs alone find what happens
	}
	for ctx.Err() == nil {
		events, err := w.Watch(ctx)
		if err != nil {
			e.log.Warn("watching runtime events", "err", err)
			e.sleep(ctx, 2*time.Second)
			continue
		}
		for ev := range events {
			if ev.Project != e.opts.Project || ev.Service == "" {
				continue
			}
			e.observe(ctx, ev)
			e.loop.Enqueue(ev.Service)
		}
		e.sleep(ctx, time.Second) // the stream broke: watch again; resyncs cover the gap
	}
}

// observe acts on one runtime event at once, before the reconcile pass it triggers: a
// server that died is out of rotation at once (the runtime may still list it as
// running for a moment) and flagged; one a process was started in from outside is
// flagged as drift. The executor's own destroys are not news.
func (e *Engine) observe(ctx context.Context, ev driver.Event) {
	switch ev.Type {
	case driver.EventDie:
		if e.exec.Retiring(ev.ServerID) {
			return
		}
		st := e.state(ev.Service)
		e.mu.Lock()
		st.flagged[ev.ServerID] = reason{reasonExited, "it exited (" + ev.Detail + ")"}
		e.mu.Unlock()
		if addr, d := e.exec.Address(ev.ServerID), e.doors.Get(ev.Service); d != nil && addr != "" {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			d.Update(dctx, nil, []string{addr})
			cancel()
		}
	case driver.EventExec:
		detail := strings.TrimSpace(ev.Detail)
		st := e.state(ev.Service)
		e.mu.Lock()
		st.flagged[ev.ServerID] = reason{reasonExec, "a process was started in it from outside (" + detail + ")"}
		e.mu.Unlock()
		e.event(ev.Service, string(ev.ServerID), "drift", "drift: %s in server %s", detail, shortID(ev.ServerID))
		e.metrics.drift.WithLabelValues(ev.Service, string(driver.DriftExec)).Inc()
	}
}

// probed lists what the health monitor probes: the servers in each front door, each
// with the check it passed when it was admitted (the revision's when unknown).
func (e *Engine) probed() []monitor.Service {
	doors := e.doors.All()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []monitor.Service
	for name, d := range doors {
		t, ok := e.targets[name]
		if !ok {
			continue
		}
		ms := monitor.Service{Name: name, Interval: t.Health.Interval}
		for _, addr := range d.Upstreams() {
			h, ok := d.Check(addr)
			if !ok {
				h = t.Health
			}
			ms.Servers = append(ms.Servers, monitor.Server{Addr: addr, Check: h})
		}
		out = append(out, ms)
	}
	return out
}

// unhealthy takes a server that failed its unhealthy threshold of probes out of
// rotation at once (requests in flight get a short grace) and has it replaced.
func (e *Engine) unhealthy(ctx context.Context, service, addr string, n int, err error) {
	if d := e.doors.Get(service); d != nil {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		d.Update(dctx, nil, []string{addr})
		cancel()
	}
	e.event(service, "", "unhealthy", "server at %s failed %d health checks in a row (%v): taken out of rotation, replacing it", addr, n, err)
	e.loop.Enqueue(service)
}
