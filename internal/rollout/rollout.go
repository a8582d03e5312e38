package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/plan"
	"github.com/kiln-build/kiln/internal/spec"
)

// Door is a service's front door, as a rollout needs it.
type Door interface {
	// Update atomically puts add into rotation and takes remove out of it, then waits
	// until no request is in flight to any of remove (or ctx ends).
	Update(ctx context.Context, add, remove []string) error
	// Has reports whether addr is in rotation.
	Has(addr string) bool
}

// Settings say how to replace servers; see spec.Update.
type Settings struct {
	Strategy         string // "rolling" or "blue-green"
	MaxSurge         int
	MaxUnavailable   int
	MinHealthy       time.Duration
	ProgressDeadline time.Duration
	KeepOld          time.Duration
	// Canary is the canary strategy's steps and analysis (Strategy "canary").
	Canary *spec.Canary
}

// Target is the state a rollout moves a service to.
type Target struct {
	Service  string
	Revision int64
	Spec     driver.ServerSpec
	Replicas int
	Settings Settings
	Health   spec.Health
}

// Executor runs rollouts. Its fields are set once and not changed.
type Executor struct {
	Driver driver.Driver
	// Healthy blocks until server s has passed t's health gate (including
	// min_healthy), or fails it: ctx ends (the progress deadline), the server answers
	// that it is not healthy, or its process exits.
	Healthy func(ctx context.Context, t Target, s driver.Server) error
	// Event, if set, records what happens; called from several goroutines. A "retry"
	// event is recorded once the wait before the retry has started on Clock.
	Event func(service, serverID, typ, message string)
	// Clock is the time of progress deadlines, keep_old, driver call timeouts and
	// retry backoff; the real clock when nil.
	Clock clock.Clock
	// CallTimeout bounds each driver call (DefaultCallTimeout when zero); a Destroy
	// gets the server's stop timeout on top.
	CallTimeout time.Duration
	// Attempts is how many times a failed driver call is made before the step fails
	// (DefaultAttempts when zero); the waits between grow from Backoff
	// (DefaultBackoff when zero), doubling up to MaxBackoff, with jitter.
	Attempts int
	Backoff  time.Duration
	// Analyze judges a step of a canary: it returns nil once the step passed, an error
	// wrapping ErrCanaryFailed (or ErrCanaryAborted) when it failed, or ctx's error. A
	// canary without it is rolled out as a rolling update.
	Analyze func(ctx context.Context, t Target, step CanaryStep) error
	// CanaryAborted, if set, is asked before each step of a canary (step, from 0) and
	// before its switch (len(steps)): an error (wrapping ErrCanaryAborted) aborts it.
	CanaryAborted func(t Target, step int) error
	// CanaryFailing, if set, is told that a canary is being aborted (with why), before
	// anything of the abort is done: the caller records the decision, so that a stop
	// in the middle of the abort finishes it rather than try the canary again.
	CanaryFailing func(t Target, err error)
	// OneByOne makes the executor create and destroy servers one by one even on a
	// driver that claims sets (the engine does not set it: its controller accounts for
	// the members a runtime replaces of its own).
	OneByOne bool

	mu       sync.Mutex
	admitted map[driver.ServerID]driver.Server // servers this executor admitted, until it removes them
	retiring map[driver.ServerID]bool          // servers being destroyed by this executor
}

// Address is where a server this executor admitted listens, even after it stopped
// (a stopped server's address is no longer reported by the runtime).
func (e *Executor) Address(id driver.ServerID) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.admitted[id].Address
}

// Admitted returns the servers of service that this executor admitted and has not
// removed since (nor been told to Forget), oldest first, as they were when admitted.
// One of them that the runtime no longer lists was removed out of band.
func (e *Executor) Admitted(service string) []driver.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []driver.Server
	for _, s := range e.admitted {
		if s.Service == service {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b driver.Server) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(string(a.ID), string(b.ID)))
	})
	return out
}

// AdmittedAt is the server this executor admitted at addr, if any.
func (e *Executor) AdmittedAt(addr string) (driver.Server, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.admitted {
		if s.Address == addr {
			return s, true
		}
	}
	return driver.Server{}, false
}

// Forget drops a server from what the executor remembers of it (Address, Admitted):
// the caller has accounted for it being gone.
func (e *Executor) Forget(id driver.ServerID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.admitted, id)
}

// Retiring reports whether the executor is destroying the server: its exit is expected.
func (e *Executor) Retiring(id driver.ServerID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.retiring[id]
}

func (e *Executor) remember(s driver.Server) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.admitted == nil {
		e.admitted = map[driver.ServerID]driver.Server{}
	}
	if s.Address != "" {
		s.Spec.Env, s.Spec.Files = nil, nil // no value is kept: only who the server is
		e.admitted[s.ID] = s
	}
}

// Defaults of the executor's bounds on driver calls.
const (
	DefaultCallTimeout = 2 * time.Minute
	DefaultAttempts    = 3
	DefaultBackoff     = 500 * time.Millisecond
	MaxBackoff         = 10 * time.Second
)

// ErrDriverTimeout means a driver call did not return within its timeout.
var ErrDriverTimeout = errors.New("the runtime did not answer in time")

// ErrNoProgress means new servers did not become healthy within the progress deadline.
var ErrNoProgress = errors.New("new servers did not become healthy within the progress deadline")

// ErrServerFailed means a new server failed its health gate before the deadline: it
// exited, or answered that it is not healthy.
var ErrServerFailed = errors.New("a new server failed")

func (e *Executor) event(service, id, typ, format string, args ...any) {
	if e.Event != nil {
		e.Event(service, id, typ, fmt.Sprintf(format, args...))
	}
}

// Run converges the service to t and returns when every server matches t, is healthy
// and in rotation, and every other server is gone; or when it fails. It is level-based:
// it reads what runs from the driver, so running it again after a crash (or on a
// service that is already converged) finishes the job without duplicates.
//
// On failure, the new servers that did not become healthy are destroyed and the
// servers that were serving are left serving; the caller decides whether to roll back.
// A server of t left out of rotation (by a stop, or a new front door) that fails its
// gate is destroyed too, but not when ctx ends during its gate: that is no failure of
// the server, which is left as it is for the next Run to admit.
//
// On a driver that claims sets (driver.SetDriver), servers are not created one by one:
// the revision's set is scaled, its new members are waited for and gated, old servers
// are evicted and the old revisions' sets deleted, with the same bounds and events (see
// runSets). On failure the failed members are evicted and the new set brought back to
// the members that serve, deleted if none does.
func (e *Executor) Run(ctx context.Context, door Door, t Target) (err error) {
	if sd := e.setDriver(); sd != nil {
		return e.runSets(ctx, door, sd, t)
	}
	// Servers that already stopped are removed in the background, off the critical
	// path of their replacements; Run returns only once they are gone.
	bg := &background{}
	defer func() { err = errors.Join(err, bg.wait()) }()
	var observed []driver.Server
	err = e.retry(ctx, t.Service, "listing servers", e.callTimeout(), func(ctx context.Context) (err error) {
		observed, err = e.Driver.List(ctx, driver.Selector{Project: t.Spec.Project, Service: t.Service})
		return err
	})
	if err != nil {
		return fmt.Errorf("listing servers of %s: %w", t.Service, err)
	}
	p := plan.Compute([]plan.Desired{{Service: t.Service, Revision: t.Revision, Spec: t.Spec, Replicas: t.Replicas}}, observed)
	sp, _ := p.Service(t.Service)
	spec := *sp.Spec

	// Servers that are already gone from the runtime's point of view leave at once.
	var old []driver.Server
	for _, c := range sp.Changes {
		switch {
		case c.Action == plan.Destroy && c.Old.State != driver.StateRunning:
			s, why := *c.Old, strings.Join(c.Reasons, "; ")
			bg.run(func() error { return e.retire(ctx, door, t.Service, s, why) })
		case c.Old != nil:
			old = append(old, *c.Old)
		}
	}
	if cd, ok := door.(CanaryDoor); ok && e.triesCanary(t, old) {
		return e.canary(ctx, cd, t, spec, sp.Keep, old)
	}
	// Servers of the target spec that a crashed rollout left out of rotation must pass
	// the health gate like new ones.
	for _, s := range sp.Keep {
		if door.Has(s.Address) {
			continue
		}
		if err := e.admit(ctx, door, t, s); err != nil {
			if ctx.Err() != nil {
				// Cut short (a stop, or a heal giving way to a rollout): the server is
				// not at fault, and the next Run admits it.
				return err
			}
			return e.fail(ctx, door, t, []driver.Server{s}, err)
		}
	}
	need := t.Replicas - len(sp.Keep)
	if t.Settings.Strategy == "blue-green" {
		return e.blueGreen(ctx, door, t, spec, need, old)
	}
	return e.rolling(ctx, door, t, spec, len(sp.Keep), need, old)
}

// background is the removals a Run leaves to go on while it does the next step.
type background struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

// run runs f in the background; wait returns its error.
func (b *background) run(f func() error) {
	b.wg.Go(func() {
		if err := f(); err != nil {
			b.mu.Lock()
			b.err = errors.Join(b.err, err)
			b.mu.Unlock()
		}
	})
}

// wait waits for everything run began and returns the errors not returned by an
// earlier wait, joined.
func (b *background) wait() error {
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.err
	b.err = nil
	return err
}

// Replace replaces one server with a fresh one from t, creating the new server first
// and admitting it once healthy, then draining and destroying the old one (if it is in
// rotation). On failure the new server is destroyed and the old one left as it is. On
// a driver of sets, the revision's set grows by one and the old server is evicted.
func (e *Executor) Replace(ctx context.Context, door Door, t Target, old driver.Server, why string) error {
	spec := t.Spec
	spec.Service, spec.Revision = t.Service, t.Revision
	if sd := e.setDriver(); sd != nil {
		return e.replaceInSet(ctx, door, sd, t, spec, old, why)
	}
	created, err := e.startBatch(ctx, door, t, spec, 1)
	if err != nil {
		return e.fail(ctx, door, t, created, err)
	}
	return e.retire(ctx, door, t.Service, old, why)
}

// rolling replaces old servers batch by batch: start up to max_surge new ones, admit
// them as they pass the health gate, then drain and destroy as many old ones. With
// max_surge 0 it first drains max_unavailable old servers to make room. have is how
// many servers of t there are already (in rotation).
//
// An old server counts against max_surge until its process has ended: on a runtime
// that says when (a driver.Stopper), the next batch starts then, while the runtime
// removes the server. A batch's old servers are removed before the next batch retires
// any, so that at most one batch awaits removal, and a removal that failed ends the
// rollout before it retires more.
func (e *Executor) rolling(ctx context.Context, door Door, t Target, spec driver.ServerSpec, have, need int, old []driver.Server) (err error) {
	surge, unavail := t.Settings.MaxSurge, t.Settings.MaxUnavailable
	var removing background // the batch before's old servers
	defer func() { err = errors.Join(err, removing.wait()) }()
	retireOld := func(n int, why string) error {
		if err := removing.wait(); err != nil {
			return err
		}
		for i := 0; i < n && len(old) > 0; i++ {
			if err := e.retireSoon(ctx, door, t.Service, old[0], why, &removing); err != nil {
				return err
			}
			old = old[1:]
		}
		return nil
	}
	replaced := "replaced by revision " + itoa(t.Revision)
	for need > 0 || len(old) > 0 {
		if need == 0 { // only surplus left
			return retireOld(len(old), "no longer needed")
		}
		batch := min(need, max(surge, 1))
		if len(old) == 0 {
			batch = need // nothing to keep serving: start them all at once
		} else if surge == 0 {
			batch = min(need, unavail)
			// Make room first: take batch old servers out before starting new ones.
			if err := retireOld(batch, replaced); err != nil {
				return err
			}
		}
		// Servers a stopped rollout left (new ones kept, old ones not yet retired) count
		// against max_surge: retire old ones first to make room, which leaves at least
		// the replicas serving.
		for surge > 0 && len(old) > 0 && have+len(old)+batch > t.Replicas+surge {
			if err := retireOld(1, replaced); err != nil {
				return err
			}
		}
		created, err := e.startBatch(ctx, door, t, spec, batch)
		if err != nil {
			return e.fail(ctx, door, t, created, err)
		}
		need -= len(created)
		have += len(created)
		if surge > 0 {
			if err := retireOld(len(created), replaced); err != nil {
				return err
			}
		}
	}
	return nil
}

// blueGreen starts the whole new set, switches the front door to it in one swap once
// every new server is healthy, keeps the old set for keep_old, then destroys it.
func (e *Executor) blueGreen(ctx context.Context, door Door, t Target, spec driver.ServerSpec, need int, old []driver.Server) error {
	created, err := e.create(ctx, t, spec, need)
	if err == nil {
		err = e.gate(ctx, t, created)
	}
	if err != nil {
		return e.fail(ctx, door, t, created, err)
	}
	if err := e.switchDoor(ctx, door, t, created, old); err != nil {
		return err
	}
	for _, s := range old {
		if err := e.retire(ctx, door, t.Service, s, "replaced by revision "+itoa(t.Revision)); err != nil {
			return err
		}
	}
	return nil
}

// startBatch creates n servers, waits for them to pass the health gate, and admits them.
func (e *Executor) startBatch(ctx context.Context, door Door, t Target, spec driver.ServerSpec, n int) ([]driver.Server, error) {
	created, err := e.create(ctx, t, spec, n)
	if err != nil {
		return created, err
	}
	if err := e.gate(ctx, t, created); err != nil {
		return created, err
	}
	var add []string
	for _, s := range created {
		add = append(add, s.Address)
	}
	if err := door.Update(ctx, add, nil); err != nil {
		return created, err
	}
	for _, s := range created {
		e.remember(s)
		e.event(t.Service, string(s.ID), "admitted", "server %s is healthy and in rotation", s.Name)
	}
	return created, nil
}

// admit gates one existing server and puts it in rotation.
func (e *Executor) admit(ctx context.Context, door Door, t Target, s driver.Server) error {
	if err := e.gate(ctx, t, []driver.Server{s}); err != nil {
		return err
	}
	e.remember(s)
	e.event(t.Service, string(s.ID), "admitted", "server %s is healthy and in rotation", s.Name)
	return door.Update(ctx, []string{s.Address}, nil)
}

// create starts n servers in parallel; it returns those created even on error.
func (e *Executor) create(ctx context.Context, t Target, spec driver.ServerSpec, n int) ([]driver.Server, error) {
	var mu sync.Mutex
	var created []driver.Server
	var errs []error
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := e.clock().Now()
			var s driver.Server
			err := e.retry(ctx, t.Service, "creating a server", e.callTimeout(), func(ctx context.Context) (err error) {
				s, err = e.Driver.Create(ctx, spec)
				return err
			})
			took := e.clock().Since(start).Round(time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			created = append(created, s)
			e.event(t.Service, string(s.ID), "created", "server %s created from revision %d at %s in %s", s.Name, t.Revision, s.Address, took)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return created, fmt.Errorf("creating servers: %w", errors.Join(errs...))
	}
	return created, nil
}

// gate waits until every server passes the health gate, within the progress deadline.
// The first server to fail it for a reason of its own (it exited, or answered that it
// is not healthy) fails the gate at once: the others are not waited for.
func (e *Executor) gate(ctx context.Context, t Target, servers []driver.Server) error {
	deadline := t.Settings.ProgressDeadline
	if deadline <= 0 {
		deadline = time.Minute
	}
	dctx, cancel := e.withTimeout(ctx, deadline, nil)
	defer cancel()
	gctx, stop := context.WithCancelCause(dctx)
	defer stop(nil)
	errFailed := errors.New("another server of the step failed")
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.Healthy(gctx, t, s)
			switch {
			case err == nil:
			case context.Cause(gctx) == errFailed && dctx.Err() == nil:
				// Cut short because another one failed: not this server's failure.
			default:
				errs[i] = fmt.Errorf("server %s: %w", s.Name, err)
				if dctx.Err() == nil {
					stop(errFailed)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if dctx.Err() == nil {
			return fmt.Errorf("%w: %w", ErrServerFailed, err)
		}
		return fmt.Errorf("%w (%s): %w", ErrNoProgress, deadline, err)
	}
	return nil
}

// retire takes a server out of rotation, waits for it to drain, and destroys it.
func (e *Executor) retire(ctx context.Context, door Door, service string, s driver.Server, why string) error {
	if err := e.drain(ctx, door, service, s); err != nil {
		return err
	}
	return e.destroy(ctx, service, s, why, e.clock().Now())
}

// retireSoon is retire for a rollout that goes on with its next step as soon as the
// server's process has ended: on a runtime that tells (driver.Stopper), it returns
// then, and the runtime's removal of the server goes on in bg.
func (e *Executor) retireSoon(ctx context.Context, door Door, service string, s driver.Server, why string, bg *background) error {
	sp := e.stopper()
	if sp == nil {
		return e.retire(ctx, door, service, s, why)
	}
	if err := e.drain(ctx, door, service, s); err != nil {
		return err
	}
	start := e.clock().Now()
	err := e.retry(ctx, service, "stopping "+s.Name, e.callTimeout()+s.Spec.StopTimeout, func(ctx context.Context) error {
		return sp.Stop(ctx, s.ID)
	})
	if err != nil {
		e.forgetRetiring(s.ID)
		return fmt.Errorf("stopping %s: %w", s.Name, err)
	}
	// The server no longer runs: its removal is cleanup, finished even if ctx ends
	// meanwhile (a stop, a heal giving way to a rollout), within removalGrace of it.
	bg.run(func() error {
		rctx, cancel := e.detach(ctx, removalGrace)
		defer cancel()
		return e.destroy(rctx, service, s, why, start)
	})
	return nil
}

// removalGrace is how long the removal of a stopped server goes on after the context
// of its rollout ended.
const removalGrace = 10 * time.Second

// detach returns a context that ends grace (on the executor's clock) after ctx does,
// for cleanup that should not be cut short by it; cancel releases it.
func (e *Executor) detach(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := e.clock().NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C():
			cancel(fmt.Errorf("%w, and %s since", context.Cause(ctx), grace))
		case <-out.Done():
		}
	})
	return out, func() {
		stop()
		cancel(nil)
	}
}

// stopper is the driver's Stopper when the executor destroys servers one by one and
// the driver claims it, else nil.
func (e *Executor) stopper() driver.Stopper {
	if e.setDriver() != nil {
		return nil
	}
	if sp, ok := e.Driver.(driver.Stopper); ok && driver.CapabilitiesOf(e.Driver).Stop {
		return sp
	}
	return nil
}

// drain takes s out of rotation and waits until no request is in flight to it; from
// then on s is retiring (see Retiring) until destroy removes it.
func (e *Executor) drain(ctx context.Context, door Door, service string, s driver.Server) error {
	addr := s.Address
	if addr == "" {
		addr = e.Address(s.ID) // it stopped: the runtime no longer reports its address
	}
	if addr != "" && door.Has(addr) {
		if err := door.Update(ctx, nil, []string{addr}); err != nil {
			return fmt.Errorf("draining %s: %w", s.Name, err)
		}
		e.event(service, string(s.ID), "draining", "server %s is out of rotation, draining", s.Name)
	}
	e.mu.Lock()
	if e.retiring == nil {
		e.retiring = map[driver.ServerID]bool{}
	}
	e.retiring[s.ID] = true
	e.mu.Unlock()
	return nil
}

// forgetRetiring ends what drain began, whether s was removed or not.
func (e *Executor) forgetRetiring(id driver.ServerID) {
	e.mu.Lock()
	delete(e.retiring, id)
	delete(e.admitted, id)
	e.mu.Unlock()
}

// destroy removes a drained server; start is when it was asked to stop.
func (e *Executor) destroy(ctx context.Context, service string, s driver.Server, why string, start time.Time) error {
	err := e.retry(ctx, service, "destroying "+s.Name, e.callTimeout()+s.Spec.StopTimeout, func(ctx context.Context) error {
		return e.remove(ctx, s.ID)
	})
	e.forgetRetiring(s.ID)
	if err != nil {
		return fmt.Errorf("destroying %s: %w", s.Name, err)
	}
	// How long it took says whether the server stops when asked (or waits to be
	// killed: a program that ignores SIGTERM as PID 1 wants init = true).
	e.event(service, string(s.ID), "destroyed", "server %s destroyed (stopped in %s): %s", s.Name, e.clock().Since(start).Round(10*time.Millisecond), why)
	return nil
}

// fail destroys servers a failed step created, so nothing half-done stays, and returns
// err. Servers still serving are not touched.
func (e *Executor) fail(ctx context.Context, door Door, t Target, created []driver.Server, err error) error {
	// Clean up even if ctx was cancelled: a failed rollout must not leave servers behind.
	cctx, cancel := e.withTimeout(context.WithoutCancel(ctx), time.Minute, ErrDriverTimeout)
	defer cancel()
	for _, s := range created {
		if rerr := e.retire(cctx, door, t.Service, s, "its rollout failed"); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// switchDoor is a blue-green switch once the new servers passed their gate: created
// take old's place in the front door at once (old drained), and old are kept keep_old
// before the caller retires them.
func (e *Executor) switchDoor(ctx context.Context, door Door, t Target, created, old []driver.Server) error {
	if len(created) == 0 && len(old) == 0 {
		return nil // nothing to switch: no step, no event (a heal that found all in place)
	}
	e.event(t.Service, "", "gated", "%d servers of revision %d passed the health gate", len(created), t.Revision)
	var add, remove []string
	for _, s := range created {
		add = append(add, s.Address)
		e.remember(s)
	}
	for _, s := range old {
		remove = append(remove, s.Address)
	}
	if err := door.Update(ctx, add, remove); err != nil {
		return fmt.Errorf("switching the front door: %w", err)
	}
	e.event(t.Service, "", "switched", "front door switched to revision %d (%d servers)", t.Revision, len(created))
	if len(old) > 0 && t.Settings.KeepOld > 0 {
		select {
		case <-e.clock().After(t.Settings.KeepOld):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
