package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/canary"
	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/rollout"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// A canary's trial, as the engine runs its analysis (rollout.Executor.Analyze) and
// the API reads and steers it (Status, Promote, Abort).

// trial is a service's canary: the status of its step, and the hand of kiln promote
// and kiln abort on it.
type trial struct {
	mu      sync.Mutex
	status  api.CanaryStatus
	running bool
	// judging is set while a step's analysis runs: a promote is for that step only.
	judging bool
	// abortedBy is who aborted the canary; the executor checks it between its steps.
	abortedBy string
	promote   chan string // who promoted, taken by the step's analysis
	abort     chan string // who aborted, to wake the step's analysis
}

// decisionStarting is a trial's decision while a step's servers start: nothing to
// judge yet.
const decisionStarting = "starting"

// ErrNoCanary means a service has no canary on trial to promote or abort;
// ErrCanaryStarting, that its step is starting (its servers are being started and
// gated) and cannot be promoted yet.
var (
	ErrNoCanary       = errors.New("no canary on trial")
	ErrCanaryStarting = errors.New("the canary's step is starting")
)

// trialOf returns the service's trial of revision, a new one when its last was of
// another revision or over.
func (e *Engine) trialOf(service string, revision int64) *trial {
	e.mu.Lock()
	defer e.mu.Unlock()
	tr := e.trials[service]
	if tr == nil || !tr.isRunning(revision) {
		tr = &trial{running: true, promote: make(chan string, 1), abort: make(chan string, 1)}
		tr.status.Revision = revision
		e.trials[service] = tr
	}
	return tr
}

func (t *trial) isRunning(revision int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running && t.status.Revision == revision
}

func (t *trial) set(f func(*api.CanaryStatus)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.status)
}

func (t *trial) get() api.CanaryStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.status
	st.Why = append([]string(nil), st.Why...)
	st.Metrics = append([]api.CanaryMetric(nil), st.Metrics...)
	return st
}

// end marks the trial over with outcome.
func (t *trial) end(outcome string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running = false
	t.status.Outcome = outcome
}

// canaryStatus is the service's canary for Status: the one on trial, or the last.
func (e *Engine) canaryStatus(service string) *api.CanaryStatus {
	e.mu.Lock()
	tr := e.trials[service]
	e.mu.Unlock()
	if tr == nil {
		return nil
	}
	st := tr.get()
	return &st
}

// Promote ends the step of the service's canary being judged as passed (a pause step
// included): the canary moves on to the next step, or replaces the stable set after
// the last. A promote is for the step being judged when it arrives: one while a step
// starts is refused (ErrCanaryStarting), and one the step did not take (it passed
// meanwhile) is not carried over to the next.
func (e *Engine) Promote(ctx context.Context, service, user string) error {
	return e.steer(service, func(t *trial) error {
		if !t.judging {
			return fmt.Errorf("service %s: %w (its servers are starting): promote it once kiln status shows it judged", service, ErrCanaryStarting)
		}
		select {
		case t.promote <- user:
		default: // one is pending already
		}
		return nil
	})
}

// Abort fails the service's canary at once, whatever step it is at: every request
// goes back to the stable set, the canary's servers are destroyed, and the revision is
// rolled back.
func (e *Engine) Abort(ctx context.Context, service, user string) error {
	return e.steer(service, func(t *trial) error {
		if t.abortedBy == "" {
			t.abortedBy = user
		}
		select {
		case t.abort <- user:
		default:
		}
		return nil
	})
}

// steer applies f to the service's running trial, under its lock.
func (e *Engine) steer(service string, f func(*trial) error) error {
	e.mu.Lock()
	tr := e.trials[service]
	e.mu.Unlock()
	if tr == nil {
		return fmt.Errorf("service %s: %w", service, ErrNoCanary)
	}
	tr.mu.Lock()
	if !tr.running {
		outcome := tr.status.Outcome
		tr.mu.Unlock()
		return fmt.Errorf("service %s: %w (its last one was %s)", service, ErrNoCanary, outcome)
	}
	defer tr.mu.Unlock()
	return f(tr)
}

// canaryAborted is the executor's check between a canary's steps: it starts the
// service's trial (so that an abort finds it from the canary's first server on), and
// returns ErrCanaryAborted if one was asked.
func (e *Engine) canaryAborted(t rollout.Target, step int) error {
	tr := e.trialOf(t.Service, t.Revision)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if c := t.Settings.Canary; c != nil {
		tr.status.Steps = len(c.Steps)
		if step < len(c.Steps) {
			tr.status.Step, tr.status.Decision, tr.status.Why = step+1, decisionStarting, []string{"the step's servers are starting"}
		} else {
			tr.status.Decision, tr.status.Why = decisionStarting, []string{"every step passed: the rest of the new set is starting, then it replaces the stable set"}
		}
	}
	if tr.abortedBy != "" {
		return fmt.Errorf("%w by %s before step %d", rollout.ErrCanaryAborted, tr.abortedBy, step+1)
	}
	return nil
}

// canaryFailing records that the service's canary is being aborted before the abort
// begins: the revision it started from is current again, so that a stop in the middle
// of the abort resumes as a rollback to it (destroying the canary's servers), never
// as the canary tried again.
func (e *Engine) canaryFailing(t rollout.Target, why error) {
	ctx := e.base(context.Background())
	r, err := e.opts.State.RunningRollout(ctx, t.Service)
	if err != nil || r.To != t.Revision || r.From == 0 || r.From == r.To {
		return
	}
	if err := e.opts.State.SetCurrent(ctx, t.Service, r.From); err != nil {
		e.stateWriteFailed("current", err, "service", t.Service, "why", "recording a canary's abort")
	}
}

// analyze judges a step of a canary from the front door's counters: every analysis
// interval it measures both sides since the step began and asks canary.Judge. It
// returns nil when the step passed (its duration over, or a promote), an error
// wrapping rollout.ErrCanaryFailed or ErrCanaryAborted otherwise, or ctx's.
func (e *Engine) analyze(ctx context.Context, t rollout.Target, step rollout.CanaryStep) error {
	var a spec.Analysis
	if t.Settings.Canary != nil {
		a = t.Settings.Canary.Analysis
	}
	tr := e.trialOf(t.Service, t.Revision)
	interval := a.Interval
	if interval <= 0 {
		interval = time.Second
	}
	started := e.clock.Now()
	tr.mu.Lock()
	tr.status = api.CanaryStatus{Revision: t.Revision, From: step.From, Step: step.Index + 1, Steps: step.Of, Weight: step.Weight,
		Pause: step.Step.Pause, Servers: len(step.Servers), StepStarted: started, StepDuration: step.Step.Duration, Decision: string(canary.Wait)}
	tr.judging = true
	select { // a promote the step before did not take is not this step's
	case <-tr.promote:
	default:
	}
	abortedBy := tr.abortedBy
	tr.mu.Unlock()
	defer func() {
		tr.mu.Lock()
		tr.judging = false
		tr.mu.Unlock()
	}()
	if abortedBy != "" {
		return fmt.Errorf("%w by %s at step %d of %d (%g%%)", rollout.ErrCanaryAborted, abortedBy, step.Index+1, step.Of, step.Weight)
	}
	var canaryW, stableW canary.Window
	begun := false
	tick := e.clock.NewTicker(interval)
	defer tick.Stop()
	waited := false
	for {
		if !begun {
			if g, err := e.groups(ctx, t.Service); err == nil {
				canaryW.Read(g[door.GroupCanary])
				stableW.Read(g[door.GroupStable])
				begun = true
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case who := <-tr.promote:
			e.event(t.Service, "", api.EventPromoted, "canary step %d of %d promoted by %s", step.Index+1, step.Of, who)
			return nil
		case who := <-tr.abort:
			tr.set(func(s *api.CanaryStatus) { s.Decision, s.Why = string(canary.Fail), []string{"aborted by " + who} })
			return fmt.Errorf("%w by %s at step %d of %d (%g%%)", rollout.ErrCanaryAborted, who, step.Index+1, step.Of, step.Weight)
		case <-tick.C():
		}
		if !begun {
			continue
		}
		now, err := e.groups(ctx, t.Service)
		if err != nil {
			continue // the door did not answer: judged at the next tick
		}
		e.revs.add(t.Service, now, map[string]int64{door.GroupStable: step.From, door.GroupCanary: t.Revision})
		cf := canary.Measure(canaryW.Read(now[door.GroupCanary]))
		sf := canary.Measure(stableW.Read(now[door.GroupStable]))
		metrics := e.queries(ctx, a, t.Revision, step.From)
		v := canary.Judge(a, cf, sf, metrics)
		tr.set(func(s *api.CanaryStatus) {
			s.Canary, s.Stable, s.Metrics = figures(cf), figures(sf), apiMetrics(metrics)
			s.Decision, s.Why = string(v.Decision), v.Why
		})
		over := !step.Step.Pause && e.clock.Since(started) >= step.Step.Duration
		switch {
		case v.Decision == canary.Fail:
			return fmt.Errorf("%w at step %d of %d (%g%%): %s; canary: %s; stable: %s", rollout.ErrCanaryFailed,
				step.Index+1, step.Of, step.Weight, strings.Join(v.Why, "; "), cf, sf)
		case v.Decision == canary.Pass && over:
			e.event(t.Service, "", api.EventJudged, "canary step %d of %d passed: canary: %s; stable: %s", step.Index+1, step.Of, cf, sf)
			return nil
		case v.Decision == canary.Wait && over && !waited:
			waited = true
			e.event(t.Service, "", api.EventCanary, "canary step %d of %d: its %s are over, but it cannot be judged yet (%s): it goes on until it can, or kiln promote %s",
				step.Index+1, step.Of, step.Step.Duration, strings.Join(v.Why, "; "), t.Service)
		}
	}
}

// groups reads the door's counters of the service's requests, by group.
func (e *Engine) groups(ctx context.Context, service string) (map[string]door.GroupStats, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := e.doors.Stats(rctx)
	if err != nil {
		return nil, err
	}
	s, ok := st[service]
	if !ok || s.Groups == nil {
		return nil, fmt.Errorf("the front door has no counters of %s", service)
	}
	return s.Groups, nil
}

// queries reads the analysis's Prometheus queries, in parallel.
func (e *Engine) queries(ctx context.Context, a spec.Analysis, revision, from int64) []canary.Metric {
	if len(a.Queries) == 0 {
		return nil
	}
	p := canary.Prometheus{URL: a.Prometheus}
	out := make([]canary.Metric, len(a.Queries))
	var wg sync.WaitGroup
	for i, q := range a.Queries {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			v, err := p.Query(qctx, canary.Expand(q.Query, revision, from))
			out[i] = canary.Metric{Name: q.Name, Value: v, Max: q.Max, Min: q.Min, Err: err}
		})
	}
	wg.Wait()
	return out
}

func figures(f canary.Figures) api.CanaryFigures {
	return api.CanaryFigures{Requests: f.Requests, Errors: f.Errors, ErrorRatio: f.ErrorRatio(), P50: f.P50, P99: f.P99}
}

func apiMetrics(ms []canary.Metric) []api.CanaryMetric {
	var out []api.CanaryMetric
	for _, m := range ms {
		am := api.CanaryMetric{Name: m.Name, Value: m.Value, Max: m.Max, Min: m.Min}
		if m.Err != nil {
			am.Error = m.Err.Error()
		}
		out = append(out, am)
	}
	return out
}

// endTrial records how the service's canary of revision ended, after its rollout.
func (e *Engine) endTrial(service string, revision int64, outcome store.Outcome) {
	e.mu.Lock()
	tr := e.trials[service]
	e.mu.Unlock()
	if tr == nil || !tr.isRunning(revision) {
		return
	}
	switch outcome {
	case store.OutcomeDeployed:
		tr.end("promoted")
	case store.OutcomePending:
	default:
		tr.end("aborted")
	}
}

// canaryPlan describes a canary's steps as kiln plan shows them; "" for another
// strategy.
func canaryPlan(svc api.Service) string {
	c := svc.Update.Canary
	if svc.Update.Strategy != spec.StrategyCanary || c == nil {
		return ""
	}
	a := c.Analysis
	rules := []string{fmt.Sprintf("at least %d requests", a.MinRequests)}
	if a.MaxErrorRatio > 0 {
		rules = append(rules, fmt.Sprintf("errors ≤ %g%%", 100*a.MaxErrorRatio))
	}
	if a.MaxErrorRatioOverStable > 0 {
		rules = append(rules, fmt.Sprintf("errors ≤ stable + %g%%", 100*a.MaxErrorRatioOverStable))
	}
	for _, r := range []struct {
		name         string
		limit, delta time.Duration
	}{{"p50", a.MaxP50, a.MaxP50OverStable}, {"p99", a.MaxP99, a.MaxP99OverStable}} {
		if r.limit > 0 {
			rules = append(rules, fmt.Sprintf("%s ≤ %s", r.name, r.limit))
		}
		if r.delta > 0 {
			rules = append(rules, fmt.Sprintf("%s ≤ stable + %s", r.name, r.delta))
		}
	}
	for _, q := range a.Queries {
		rules = append(rules, "query "+q.Name)
	}
	sticky := ""
	switch {
	case c.Sticky == door.StickyCookie:
		sticky = ", sticky by cookie"
	case strings.HasPrefix(c.Sticky, "header:"):
		sticky = ", sticky by header " + strings.TrimPrefix(c.Sticky, "header:")
	}
	return fmt.Sprintf("a canary: %s, then 100%%%s; each step judged on %s", canarySteps(c.Steps), sticky, strings.Join(rules, ", "))
}

// checkStrategy refuses a canary on a runtime that carries the traffic itself (or
// keeps a revision's servers as a set, as one that does): the weights and the
// measurements are the front door's, and there it carries none.
func (e *Engine) checkStrategy(svc api.Service) error {
	if svc.Update.Strategy == spec.StrategyCanary && (e.caps.Traffic || e.exec.SetDriver() != nil) {
		return fmt.Errorf("service %s: strategy = \"canary\" needs kiln's front door to carry the service's requests, and on runtime %s the runtime's own Service does: use \"rolling\" or \"blue-green\" there (canary releases run on the docker runtime)", svc.Name, e.opts.Driver.Name())
	}
	return nil
}
