package engine

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/frontdoor"
	"github.com/kiln-build/kiln/internal/plan"
	"github.com/kiln-build/kiln/internal/rollout"
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
	// On a runtime of sets, the members of the revision's set that are still pending
	// are the runtime's to start: they are not planned (as the executor does not plan
	// them), and are waited for as any missing server.
	planned := observed
	var set *rollout.TargetSet
	if e.exec.SetDriver() != nil {
		ts, err := e.exec.TargetSet(ctx, t)
		if err != nil {
			return 0, err
		}
		set = &ts
		pending := map[driver.ServerID]bool{}
		for _, m := range ts.Members {
			pending[m.ID] = m.State == driver.StatePending
		}
		planned = slices.DeleteFunc(slices.Clone(observed), func(s driver.Server) bool { return pending[s.ID] })
	}
	p := plan.Compute([]plan.Desired{{Service: service, Revision: rev.Number, Spec: t.Spec, Replicas: t.Replicas}}, planned)
	sp, _ := p.Service(service)

	d, err := e.door(ctx, svc)
	if err != nil {
		return 0, err
	}
	gone := e.gone(service, observed, d)
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
		for _, s := range gone { // made up for already: nothing is missing
			e.exec.Forget(s.ID)
		}
		e.settle(service, st)
		return 0, nil
	}
	// Only failures pace heals: replacing drifted servers is not a crash loop, unless the
	// servers made to replace drifted ones drift the same way (see recurringDrift).
	crashing := len(sp.Changes) > 0 || needsAdmission
	for _, r := range replace {
		if !r.why.kind.isDrift() || e.recurringDrift(service, st, r.why) {
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
	// Servers removed out of band are named, and account for the missing servers the
	// plan found (on a runtime of sets, for those their set is making).
	covered := e.missing(service, t, d, set, gone, sp.Count(plan.Create))
	for _, c := range sp.Changes {
		switch {
		case c.Action == plan.Create && covered > 0:
			covered--
			continue
		case c.Action == plan.Create && set != nil:
			e.event(service, "", "heal", "a server of revision %d is missing: its set is scaled to %d servers", rev.Number, t.Replicas)
		case c.Action == plan.Create:
			e.event(service, "", "heal", "a server of revision %d is missing: creating one", rev.Number)
		default:
			e.event(service, string(c.Old.ID), "heal", "server %s: %s%s: replacing it", c.Old.Name, strings.Join(c.Reasons, "; "), e.setDrift(ctx, service, set, *c.Old))
		}
		e.metrics.replaced(service, causeReason(c.Cause))
	}
	// Flagged servers first: a server that died is replaced before anything else (Run
	// would otherwise try to admit it back, since the runtime may still list it).
	for _, r := range replace {
		if r.why.kind == reasonDrift {
			e.mu.Lock()
			now := e.clock.Now()
			maps.DeleteFunc(st.driftReplaced, func(_ string, at time.Time) bool { return now.Sub(at) >= healWindow })
			st.driftReplaced[r.why.detail] = now
			e.mu.Unlock()
		}
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
	if t.Settings.Strategy == spec.StrategyCanary {
		// A heal restores the revision that serves: there is nothing to try on a share.
		t.Settings.Strategy = spec.StrategyRolling
	}
	return 0, e.exec.Run(ctx, d, t)
}

// gone returns the servers of service the executor admitted that the runtime no
// longer lists, oldest first: removed out of band (kiln's own removals are forgotten
// as they happen). Each is taken out of rotation and out of the monitor at once, for
// the runtime's events about it may have been missed.
func (e *Engine) gone(service string, observed []driver.Server, d *frontdoor.Door) []driver.Server {
	listed := map[driver.ServerID]bool{}
	for _, s := range observed {
		listed[s.ID] = true
	}
	var out []driver.Server
	for _, s := range e.exec.Admitted(service) {
		if listed[s.ID] {
			continue
		}
		out = append(out, s)
		if d.Has(s.Address) {
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			d.Update(dctx, nil, []string{s.Address})
			cancel()
		}
		e.monitor.Forget(service, s.Address)
	}
	return out
}

// missing records the servers removed out of band (gone) as missing: a heal event
// naming each, and kiln_replacements_total{reason="missing"}. On a runtime of sets, a
// member of the revision's set is replaced by the runtime, not by kiln: its event
// says so (naming the replacement once the set has one), and the replacement is
// admitted like any server of the revision. It returns how many of the plan's creates
// (missing servers) the events account for; a server gone that no create stands for
// was made up for already and is only forgotten.
func (e *Engine) missing(service string, t rollout.Target, d *frontdoor.Door, set *rollout.TargetSet, gone []driver.Server, creates int) int {
	// The set's replacements: running or pending members kiln has not admitted.
	var fresh []driver.Server
	bySet := set != nil && set.Exists && set.Replicas >= t.Replicas // the set is at its size: it replaces members
	if bySet {
		admitted := map[driver.ServerID]bool{}
		for _, s := range e.exec.Admitted(service) {
			admitted[s.ID] = true
		}
		for _, m := range set.Members {
			if !admitted[m.ID] && !d.Has(m.Address) && m.State != driver.StateExited {
				fresh = append(fresh, m)
			}
		}
	}
	covered := 0
	for _, s := range gone {
		e.exec.Forget(s.ID)
		var how string
		switch {
		case bySet && s.Revision == set.Ref.Revision && len(fresh) > 0:
			r := fresh[0]
			fresh = fresh[1:]
			how = "its set replaced it with server " + r.Name
			if r.State == driver.StatePending { // not planned: one of the creates
				covered++
			}
		case bySet && s.Revision == set.Ref.Revision:
			how = "its set replaces it"
			covered++
		case covered < creates && set != nil:
			how = fmt.Sprintf("its set is scaled to %d servers", t.Replicas)
			covered++
		case covered < creates:
			how = "creating one"
			covered++
		default:
			continue
		}
		e.event(service, string(s.ID), "heal", "server %s is missing (removed out of band): %s", s.Name, how)
		e.metrics.replaced(service, reasonMissing)
	}
	return min(covered, creates)
}

// recurringDrift reports whether why, a server's drift, is one a server was replaced
// for within healWindow: a drift every new server has comes with the image or the
// runtime (a file the image's program writes outside writable, a mount point made by
// the runtime), not from outside, and replacing servers does not cure it. It is paced
// as a crash loop, and said once, with what to do.
func (e *Engine) recurringDrift(service string, st *serviceState, why reason) bool {
	if why.kind != reasonDrift {
		return false
	}
	e.mu.Lock()
	at, ok := st.driftReplaced[why.detail]
	recurring := ok && e.clock.Since(at) < healWindow
	said := st.reported["recurring:"+why.detail]
	if recurring {
		st.reported["recurring:"+why.detail] = true
	}
	e.mu.Unlock()
	if recurring && !said {
		e.event(service, "", "degraded", "new servers drift as the ones they replaced did (%s): the image or the runtime makes this change, not an intruder; kiln replaces them with backoff: make the path writable in the spec, fix the image, or set drift = \"report\"", strings.TrimPrefix(why.detail, "drift: "))
	}
	return recurring
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

// setDrift is, on a runtime of sets, what the runtime says changed a server's set out of
// band (a `kubectl scale` of its ReplicaSet), as " (drift: ...)", recorded as drift; ""
// when nothing did or the runtime cannot tell.
func (e *Engine) setDrift(ctx context.Context, service string, set *rollout.TargetSet, s driver.Server) string {
	differ, ok := e.opts.Driver.(driver.Differ)
	if set == nil || !ok || !e.caps.ConfigDiff {
		return ""
	}
	drifts, err := differ.Diff(ctx, s)
	if err != nil {
		return ""
	}
	var parts []string
	for _, d := range drifts {
		if d.Kind == driver.DriftSet {
			parts = append(parts, d.Detail)
			e.metrics.drift.WithLabelValues(service, string(d.Kind)).Inc()
		}
	}
	if len(parts) == 0 {
		return ""
	}
	e.event(service, string(s.ID), "drift", "drift of the set of server %s: %s", s.Name, strings.Join(parts, "; "))
	return " (drift: " + strings.Join(parts, "; ") + ")"
}
