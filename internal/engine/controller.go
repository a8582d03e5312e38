package engine

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/frontdoor"
	"github.com/kiln-build/kiln/internal/health"
	"github.com/kiln-build/kiln/internal/plan"
	"github.com/kiln-build/kiln/internal/rollout"
	"github.com/kiln-build/kiln/internal/spec"
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
	flagged   map[driver.ServerID]string // servers to replace, and why (exec, drift)
	failing   map[string]int             // consecutive failed probes by address
	reported  map[string]bool            // drift already reported (report mode)
	lastDrift string
	drifted   map[driver.ServerID]string // the last drift found in each server
}

func (e *Engine) state(service string) *serviceState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.states[service]
	if st == nil {
		st = &serviceState{flagged: map[driver.ServerID]string{}, failing: map[string]int{}, reported: map[string]bool{}, drifted: map[driver.ServerID]string{}}
		e.states[service] = st
	}
	return st
}

// control is the controller: level-based, it reconciles a service at once when the
// runtime reports something about one of its servers or a health check fails, and
// every service at every resync. It returns when ctx ends.
func (e *Engine) control(ctx context.Context) {
	kick := make(chan string, 256)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.watch(ctx, kick) }()
	go func() { defer wg.Done(); e.monitor(ctx, kick) }()
	defer wg.Wait()
	resync := e.opts.Resync
	if resync <= 0 {
		resync = DefaultResync
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-kick:
			e.reconcile(ctx, name, false)
		case <-tick.C:
			e.reconcile(ctx, "", true)
		}
	}
}

// watch turns runtime events into reconciliations, and execs into drift.
func (e *Engine) watch(ctx context.Context, kick chan<- string) {
	w, ok := e.opts.Driver.(driver.Watcher)
	if !ok {
		return
	}
	for ctx.Err() == nil {
		events, err := w.Watch(ctx)
		if err != nil {
			e.log.Warn("watching runtime events", "err", err)
			sleep(ctx, 2*time.Second)
			continue
		}
		for ev := range events {
			if ev.Project != e.opts.Project || ev.Service == "" {
				continue
			}
			// A server that died is out of rotation at once and replaced, even if the
			// runtime still lists it as running for a moment. Its own destroys are not news.
			if ev.Type == driver.EventDie && !e.exec.Retiring(ev.ServerID) {
				st := e.state(ev.Service)
				e.mu.Lock()
				st.flagged[ev.ServerID] = "it exited (" + ev.Detail + ")"
				e.mu.Unlock()
				d := e.doors.Get(ev.Service)
				if addr := e.exec.Address(ev.ServerID); d != nil && addr != "" {
					dctx, cancel := context.WithTimeout(ctx, time.Second)
					d.Update(dctx, nil, []string{addr})
					cancel()
				}
			}
			if ev.Type == driver.EventChange && strings.HasPrefix(ev.Detail, "exec") {
				st := e.state(ev.Service)
				e.mu.Lock()
				st.flagged[ev.ServerID] = "a process was started in it from outside (" + strings.TrimSpace(ev.Detail) + ")"
				e.mu.Unlock()
				e.event(ev.Service, string(ev.ServerID), "drift", "drift: %s in server %s", strings.TrimSpace(ev.Detail), shortID(ev.ServerID))
				e.metrics.drift.WithLabelValues(ev.Service, string(driver.DriftExec)).Inc()
			}
			select {
			case kick <- ev.Service:
			default:
			}
		}
		sleep(ctx, time.Second) // the stream broke: watch again; resyncs cover the gap
	}
}

// monitor probes the servers in every front door at their service's health interval;
// a server that fails unhealthy_threshold probes in a row leaves the front door at once
// and is flagged for replacement.
func (e *Engine) monitor(ctx context.Context, kick chan<- string) {
	last := map[string]time.Time{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		e.mu.Lock()
		type job struct {
			service string
			door    *frontdoor.Door
			t       rollout.Target
		}
		var jobs []job
		for name, d := range e.doors.All() {
			t, ok := e.targets[name]
			if !ok || time.Since(last[name]) < t.Health.Interval {
				continue
			}
			last[name] = time.Now()
			jobs = append(jobs, job{name, d, t})
		}
		e.mu.Unlock()
		for _, j := range jobs {
			for _, addr := range j.door.Upstreams() {
				h, ok := j.door.Check(addr)
				if !ok {
					h = j.t.Health
				}
				go e.probe(ctx, kick, j.service, j.door, h, addr)
			}
		}
	}
}

func (e *Engine) probe(ctx context.Context, kick chan<- string, service string, d *frontdoor.Door, h spec.Health, addr string) {
	start := time.Now()
	err := health.Probe(ctx, addr, health.Check{HTTPPath: h.HTTP, TCP: h.TCP, Timeout: h.Timeout})
	e.metrics.probes.WithLabelValues(service).Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		return
	}
	st := e.state(service)
	e.mu.Lock()
	if err == nil {
		delete(st.failing, addr)
		e.mu.Unlock()
		return
	}
	st.failing[addr]++
	n := st.failing[addr]
	e.mu.Unlock()
	if n != max(h.UnhealthyThreshold, 1) {
		return
	}
	// Out of rotation at once; requests in flight get a short grace to finish.
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	d.Update(dctx, nil, []string{addr})
	cancel()
	e.event(service, "", "unhealthy", "server at %s failed %d health checks in a row (%v): taken out of rotation, replacing it", addr, n, err)
	select {
	case kick <- service:
	default:
	}
}

// reconcile heals the named service (every service when name is ""): anything
// plan.Compute finds (exited, missing, extra or altered servers) and servers flagged
// for drift or failed health checks are replaced from the current revision. A service
// with a rollout running is left to it. With checkDrift, every server is also compared
// with its spec (Differ).
func (e *Engine) reconcile(ctx context.Context, name string, checkDrift bool) {
	services, err := e.opts.State.Services(ctx)
	if err != nil {
		e.log.Error("controller: reading services", "err", err)
		return
	}
	for _, sv := range services {
		if name != "" && sv.Name != name {
			continue
		}
		st := e.state(sv.Name)
		if !st.lock.TryLock() {
			continue // a rollout or a heal is changing it; the next pass looks again
		}
		hctx, cancel := context.WithCancel(ctx)
		e.mu.Lock()
		st.cancelHeal = cancel
		e.mu.Unlock()
		e.work.Add(1)
		go func() {
			defer e.work.Done()
			defer st.lock.Unlock()
			defer cancel()
			err := e.heal(hctx, sv.Name, sv.Current, st, checkDrift)
			e.mu.Lock()
			st.cancelHeal = nil
			if err != nil && hctx.Err() == nil {
				st.cause = err.Error()
			}
			e.mu.Unlock()
			if err != nil && hctx.Err() == nil {
				e.event(sv.Name, "", "error", "healing: %v", err)
			}
		}()
	}
}

// heal does one reconciliation of one service; the caller holds st.lock.
func (e *Engine) heal(ctx context.Context, service string, current int64, st *serviceState, checkDrift bool) error {
	if _, err := e.opts.State.RunningRollout(ctx, service); err == nil {
		return nil
	}
	rev, err := e.opts.State.Revision(ctx, service, current)
	if err != nil {
		return err
	}
	svc, err := decodeService(rev)
	if err != nil {
		return err
	}
	t, err := e.target(svc, rev.Number)
	if err != nil {
		return err
	}
	// A heal restores capacity: a server counts once it passes its checks; min_healthy
	// is a guard for rollouts of new code, not for fresh servers of a running revision.
	t.Settings.MinHealthy = 0
	observed, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project, Service: service})
	if err != nil {
		return err
	}
	p := plan.Compute([]plan.Desired{{Service: service, Revision: rev.Number, Spec: t.Spec, Replicas: t.Replicas}}, observed)
	sp, _ := p.Service(service)

	d, err := e.door(ctx, svc)
	if err != nil {
		return err
	}
	// Servers to replace one by one: flagged (exec, failed health) or drifted.
	type replacement struct {
		server driver.Server
		why    string
	}
	var replace []replacement
	e.mu.Lock()
	flagged := st.flagged
	st.flagged = map[driver.ServerID]string{}
	failing := map[string]bool{}
	for addr, n := range st.failing {
		if n >= max(t.Health.UnhealthyThreshold, 1) {
			failing[addr] = true
		}
	}
	e.mu.Unlock()
	e.mu.Lock()
	for id := range st.drifted { // forget servers that are gone
		if !slices.ContainsFunc(sp.Keep, func(s driver.Server) bool { return s.ID == id }) {
			delete(st.drifted, id)
		}
	}
	e.mu.Unlock()
	differ, canDiff := e.opts.Driver.(driver.Differ)
	for _, s := range sp.Keep {
		switch {
		case strings.Contains(flagged[s.ID], "from outside") && svc.Drift == spec.DriftReport:
			e.event(service, string(s.ID), "drift", "drift in server %s (reported, not replaced): %s", s.Name, flagged[s.ID])
		case flagged[s.ID] != "":
			replace = append(replace, replacement{s, flagged[s.ID]})
		case failing[s.Address]:
			replace = append(replace, replacement{s, "it failed its health checks"})
		case !d.Has(s.Address):
			// Running and of the right spec but not in rotation (a failed admission, or
			// a heal interrupted by a restart): the rollout executor admits it below.
		case checkDrift && canDiff:
			drifts, err := differ.Diff(ctx, s)
			if err != nil || len(drifts) == 0 {
				continue
			}
			var parts []string
			kinds := map[driver.DriftKind]bool{}
			for _, dr := range drifts {
				parts = append(parts, string(dr.Kind)+": "+dr.Detail)
				kinds[dr.Kind] = true
			}
			detail := strings.Join(parts, "; ")
			e.mu.Lock()
			st.lastDrift = fmt.Sprintf("%s: %s", s.Name, detail)
			st.drifted[s.ID] = detail
			seen := st.reported[string(s.ID)+detail]
			st.reported[string(s.ID)+detail] = true
			e.mu.Unlock()
			if !seen {
				for k := range kinds {
					e.metrics.drift.WithLabelValues(service, string(k)).Inc()
				}
			}
			if svc.Drift == spec.DriftReport {
				if !seen {
					e.event(service, string(s.ID), "drift", "drift in server %s (reported, not replaced): %s", s.Name, detail)
				}
				continue
			}
			e.event(service, string(s.ID), "drift", "drift in server %s: %s", s.Name, detail)
			replace = append(replace, replacement{s, "drift: " + detail})
		}
	}
	needsAdmission := false
	for _, s := range sp.Keep {
		if !d.Has(s.Address) && !failing[s.Address] && flagged[s.ID] == "" {
			needsAdmission = true
		}
	}
	if len(sp.Changes) == 0 && len(replace) == 0 && !needsAdmission {
		e.settle(service, st)
		return nil
	}
	// Only failures pace heals: replacing drifted servers is not a crash loop.
	crashing := len(sp.Changes) > 0 || needsAdmission
	for _, r := range replace {
		if !strings.HasPrefix(r.why, "drift") && !strings.Contains(r.why, "from outside") {
			crashing = true
		}
	}
	// A revision that never deployed (its first rollout failed) is healed with backoff
	// from the first attempt: its servers are expected to fail again.
	failedRev := rev.Outcome == store.OutcomeFailed
	if failedRev {
		e.degrade(service, st, fmt.Sprintf("revision %d failed: %s", rev.Number, rev.Detail))
	}
	if !crashing {
		// no backoff
	} else if wait := e.backoff(service, st, failedRev); wait > 0 {
		// Flagged servers stay flagged for the next pass.
		e.mu.Lock()
		for _, r := range replace {
			if flagged[r.server.ID] != "" {
				st.flagged[r.server.ID] = flagged[r.server.ID]
			}
		}
		e.mu.Unlock()
		return nil
	}
	for _, c := range sp.Changes {
		switch c.Action {
		case plan.Create:
			e.event(service, "", "heal", "a server of revision %d is missing: creating one", rev.Number)
		default:
			e.event(service, string(c.Old.ID), "heal", "server %s: %s: replacing it", c.Old.Name, strings.Join(c.Reasons, "; "))
		}
		if c.Action == plan.Create {
			e.metrics.replaced(service, "missing")
		} else {
			e.metrics.replaced(service, strings.Join(c.Reasons, "; "))
		}
	}
	// Flagged servers first: a server that died is replaced before anything else (Run
	// would otherwise try to admit it back, since the runtime may still list it).
	for _, r := range replace {
		e.event(service, string(r.server.ID), "heal", "replacing server %s: %s", r.server.Name, r.why)
		e.metrics.replaced(service, r.why)
		if err := e.exec.Replace(ctx, d, t, r.server, r.why); err != nil {
			return err
		}
		e.mu.Lock()
		delete(st.failing, r.server.Address)
		e.mu.Unlock()
	}
	if len(sp.Changes) == 0 && !needsAdmission {
		return nil
	}
	return e.exec.Run(ctx, d, t)
}

// backoff records a heal and returns how long to wait instead, if the service is
// crash-looping: after crashLoopHeals heals within healWindow (at once for a revision
// that never deployed, failed), each further heal waits twice as long as the one
// before, up to maxBackoff.
func (e *Engine) backoff(service string, st *serviceState, failed bool) time.Duration {
	threshold := crashLoopHeals
	if failed {
		threshold = 1
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if failed && (st.gaveUp || len(st.heals) >= failedAttempts) {
		if !st.gaveUp {
			st.gaveUp = true
			cause := st.cause
			go e.event(service, "", "degraded", "the current revision never deployed and failed %d more attempts: kiln stops trying until the next apply (%s)", failedAttempts, cause)
		}
		return maxBackoff
	}
	var recent []time.Time
	for _, t := range st.heals {
		if now.Sub(t) < healWindow || now.Sub(t) < 2*maxBackoff && len(st.heals) >= threshold {
			recent = append(recent, t)
		}
	}
	st.heals = recent
	if n := len(recent); n >= threshold {
		wait := time.Duration(math.Min(float64(maxBackoff), float64(time.Second)*math.Pow(2, float64(n-threshold+1))))
		if left := wait - now.Sub(recent[n-1]); left > 0 {
			if !st.degraded {
				st.degraded = true
				go e.event(service, "", "degraded", "service is crash-looping (%d replacements in a row): backing off, next attempt in %s", n, left.Round(time.Second))
			}
			return left
		}
	}
	st.heals = append(st.heals, now)
	return 0
}

// degrade marks the service degraded because of cause.
func (e *Engine) degrade(service string, st *serviceState, cause string) {
	e.mu.Lock()
	was := st.degraded
	st.degraded, st.cause = true, cause
	e.mu.Unlock()
	if !was {
		e.event(service, "", "degraded", "service is degraded: %s", cause)
	}
}

// recovered clears what the controller knew of a service's failures: a revision of it
// has just been deployed.
func (e *Engine) recovered(service string) {
	st := e.state(service)
	e.mu.Lock()
	st.degraded, st.cause, st.heals, st.gaveUp = false, "", nil, false
	e.mu.Unlock()
}

// settle notes a pass that found nothing to do: a degraded service has recovered.
func (e *Engine) settle(service string, st *serviceState) {
	e.mu.Lock()
	recovered := st.degraded && (len(st.heals) == 0 || time.Since(st.heals[len(st.heals)-1]) > healWindow)
	if recovered {
		st.degraded, st.cause = false, ""
		st.heals = nil
	}
	e.mu.Unlock()
	if recovered {
		e.event(service, "", "recovered", "service is healthy again")
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func shortID(id driver.ServerID) string { return string(id)[:min(12, len(id))] }
