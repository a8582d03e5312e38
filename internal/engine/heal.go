package engine

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/plan"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// heal does one reconciliation of one service; the caller holds st.lock. It returns
// how long to wait before the next attempt when the service is crash-looping (0
// otherwise).
func (e *Engine) heal(ctx context.Context, service string, current int64, st *serviceState, checkDrift bool) (time.Duration, error) {
	if _, err := e.opts.State.RunningRollout(ctx, service); err == nil {
		return 0, nil
	}
	rev, err := e.opts.State.Revision(ctx, service, current)
	if err != nil {
		return 0, err
	}
	svc, err := decodeService(rev)
	if err != nil {
		return 0, err
	}
	t, err := e.target(svc, rev.Number)
	if err != nil {
		return 0, err
	}
	// A heal restores capacity: a server counts once it passes its checks; min_healthy
	// is a guard for rollouts of new code, not for fresh servers of a running revision.
	t.Settings.MinHealthy = 0
	observed, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project, Service: service})
	if err != nil {
		return 0, err
	}
	p := plan.Compute([]plan.Desired{{Service: service, Revision: rev.Number, Spec: t.Spec, Replicas: t.Replicas}}, observed)
	sp, _ := p.Service(service)

	d, err := e.door(ctx, svc)
	if err != nil {
		return 0, err
	}
	// Servers to replace one by one: flagged (exited, exec), failing health or drifted.
	type replacement struct {
		server driver.Server
		why    reason
	}
	var replace []replacement
	threshold := max(t.Health.UnhealthyThreshold, 1)
	failing := func(s driver.Server) bool { return e.monitor.Failures(service, s.Address) >= threshold }
	e.mu.Lock()
	flagged := st.flagged
	st.flagged = map[driver.ServerID]reason{}
	for id := range st.drifted { // forget servers that are gone
		if !slices.ContainsFunc(sp.Keep, func(s driver.Server) bool { return s.ID == id }) {
			delete(st.drifted, id)
		}
	}
	e.mu.Unlock()
	differ, canDiff := e.opts.Driver.(driver.Differ)
	canDiff = canDiff && (e.caps.ConfigDiff || e.caps.FileDiff)
	for _, s := range sp.Keep {
		why, isFlagged := flagged[s.ID]
		switch {
		case isFlagged && why.kind == reasonExec && svc.Drift == spec.DriftReport:
			e.event(service, string(s.ID), "drift", "drift in server %s (reported, not replaced): %s", s.Name, why.detail)
		case isFlagged:
			replace = append(replace, replacement{s, why})
		case failing(s):
			replace = append(replace, replacement{s, reason{reasonUnhealthy, "it failed its health checks"}})
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
			replace = append(replace, replacement{s, reason{reasonDrift, "drift: " + detail}})
		}
	}
	needsAdmission := false
	for _, s := range sp.Keep {
		if _, isFlagged := flagged[s.ID]; !d.Has(s.Address) && !failing(s) && !isFlagged {
			needsAdmission = true
		}
	}
	if len(sp.Changes) == 0 && len(replace) == 0 && !needsAdmission {
		e.settle(service, st)
		return 0, nil
	}
	// Only failures pace heals: replacing drifted servers is not a crash loop.
	crashing := len(sp.Changes) > 0 || needsAdmission
	for _, r := range replace {
		if !r.why.kind.isDrift() {
			crashing = true
		}
	}
	// A revision that never deployed (its first rollout failed) is healed with backoff
	// from the first attempt: its servers are expected to fail again.
	failedRev := rev.Outcome == store.OutcomeFailed
	if failedRev {
		e.degrade(service, st, fmt.Sprintf("revision %d failed: %s", rev.Number, rev.Detail))
	}
	if crashing {
		if wait := e.backoff(service, st, failedRev); wait > 0 {
			// Flagged servers stay flagged for the next pass.
			e.mu.Lock()
			for _, r := range replace {
				if why, ok := flagged[r.server.ID]; ok {
					st.flagged[r.server.ID] = why
				}
			}
			e.mu.Unlock()
			return wait, nil
		}
	}
	for _, c := range sp.Changes {
		switch c.Action {
		case plan.Create:
			e.event(service, "", "heal", "a server of revision %d is missing: creating one", rev.Number)
		default:
			e.event(service, string(c.Old.ID), "heal", "server %s: %s: replacing it", c.Old.Name, strings.Join(c.Reasons, "; "))
		}
		e.metrics.replaced(service, causeReason(c.Cause))
	}
	// Flagged servers first: a server that died is replaced before anything else (Run
	// would otherwise try to admit it back, since the runtime may still list it).
	for _, r := range replace {
		e.event(service, string(r.server.ID), "heal", "replacing server %s: %s", r.server.Name, r.why.detail)
		e.metrics.replaced(service, r.why.kind)
		if err := e.exec.Replace(ctx, d, t, r.server, r.why.detail); err != nil {
			return 0, err
		}
		e.monitor.Forget(service, r.server.Address)
	}
	if len(sp.Changes) == 0 && !needsAdmission {
		return 0, nil
	}
	return 0, e.exec.Run(ctx, d, t)
}

// backoff records a heal and returns how long to wait instead, if the service is
// crash-looping: after crashLoopHeals heals within healWindow (at once for a revision
// that never deployed, failed), each further heal waits twice as long as the one
// before, up to maxBackoff.
func (e *Engine) backoff(service string, st *serviceState, failed bool) time.Duration {
	wait, announce := e.nextHeal(st, failed)
	if announce != "" {
		e.event(service, "", "degraded", "%s", announce)
	}
	return wait
}

// nextHeal is backoff's decision, and the event that announces it, if any.
func (e *Engine) nextHeal(st *serviceState, failed bool) (time.Duration, string) {
	threshold := crashLoopHeals
	if failed {
		threshold = 1
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	if failed && (st.gaveUp || len(st.heals) >= failedAttempts) {
		announce := ""
		if !st.gaveUp {
			st.gaveUp = true
			announce = fmt.Sprintf("the current revision never deployed and failed %d more attempts: kiln stops trying until the next apply (%s)", failedAttempts, st.cause)
		}
		return maxBackoff, announce
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
			announce := ""
			if !st.degraded {
				st.degraded = true
				announce = fmt.Sprintf("service is crash-looping (%d replacements in a row): backing off, next attempt in %s", n, left.Round(time.Second))
			}
			return left, announce
		}
	}
	st.heals = append(st.heals, now)
	return 0, ""
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
	recovered := st.degraded && (len(st.heals) == 0 || e.clock.Since(st.heals[len(st.heals)-1]) > healWindow)
	if recovered {
		st.degraded, st.cause = false, ""
		st.heals = nil
	}
	e.mu.Unlock()
	if recovered {
		e.event(service, "", "recovered", "service is healthy again")
	}
}

// sleep waits d on the engine's clock, or until ctx ends.
func (e *Engine) sleep(ctx context.Context, d time.Duration) {
	t := e.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C():
	}
}

func shortID(id driver.ServerID) string { return string(id)[:min(12, len(id))] }
