package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/utils/clock"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/frontdoor"
	"github.com/kiln-build/kiln/internal/health"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/monitor"
	"github.com/kiln-build/kiln/internal/reconcile"
	"github.com/kiln-build/kiln/internal/resolve"
	"github.com/kiln-build/kiln/internal/rollout"
	"github.com/kiln-build/kiln/internal/secret"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// Options configure an Engine.
type Options struct {
	State  *store.Store
	Images *imagestore.Store
	Driver driver.Driver
	// Owner names this process in rollout records, e.g. "kiln serve (pid 42)".
	Owner string
	// Project scopes every server this engine creates and sees (see driver.ServerSpec).
	Project string
	// Resync is the controller's period (DefaultResync when zero).
	Resync time.Duration
	// Clock is the controller's and the health monitor's time: real time when nil.
	Clock clock.WithTicker
	// StateDir holds the pipelines' source mirrors and checkouts.
	StateDir string
	// Secrets seals the secrets kept in the state and digests them; a key of its own,
	// lost at exit, when nil (tests).
	Secrets *secret.Key
	Log     *slog.Logger
	// Doors is the door process the engine configures with every service's front door;
	// nil serves them in this process (door.New).
	Doors door.Plane
}

// Engine carries out kiln's use cases. Long-running work (rollouts) runs under the
// context given to Start, never under a request's: a client that goes away does not
// stop a rollout half-way.
type Engine struct {
	opts    Options
	key     *secret.Key
	exec    *rollout.Executor
	log     *slog.Logger
	metrics *metrics
	traffic *traffic
	revs    *revisionTraffic

	// applying serializes the part of Apply from its checks to its rollouts' start, so
	// that an apply sees the doors and rollouts of the one before it.
	applying sync.Mutex

	caps    driver.Capabilities // what the runtime claims (driver.CapabilitiesOf)
	doors   *frontdoor.Registry
	monitor *monitor.Monitor
	loop    *reconcile.Loop
	clock   clock.WithTicker

	mu        sync.Mutex
	ctx       context.Context           // set by Start
	targets   map[string]rollout.Target // each service's current target, for the health monitor
	states    map[string]*serviceState
	pipelines Pipelines // records an apply's pipelines (SetPipelines)
	subs      map[chan api.Event]bool
	rollouts  map[string]int64  // the rollout running for each service, by ID
	trials    map[string]*trial // each service's canary: on trial, or the last
	own       map[int64]bool    // the running rollouts this engine started (by ID)
	ready     chan struct{}     // closed once Start has resumed what a stop interrupted
	work      sync.WaitGroup
}

// New returns an engine; it starts nothing until Start.
func New(opts Options) *Engine {
	e := &Engine{opts: opts, targets: map[string]rollout.Target{}, states: map[string]*serviceState{},
		subs: map[chan api.Event]bool{}, rollouts: map[string]int64{}, trials: map[string]*trial{}, own: map[int64]bool{}, ready: make(chan struct{}), log: opts.Log}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.key = opts.Secrets; e.key == nil {
		raw := make([]byte, 32)
		rand.Read(raw)
		e.key, _ = secret.NewKey(raw)
	}
	e.metrics = newMetrics(e)
	plane := opts.Doors
	if plane == nil {
		// Served in this process: its certificates and ACME account kept with the state.
		dir := ""
		if opts.StateDir != "" {
			dir = filepath.Join(opts.StateDir, "door")
		}
		plane = door.New(door.Options{Log: e.log, Dir: dir})
	}
	e.doors = frontdoor.NewRegistry(plane)
	e.traffic = newTraffic(e.doors.Stats)
	e.revs = newRevisionTraffic()
	e.caps = driver.CapabilitiesOf(opts.Driver)
	if e.clock = opts.Clock; e.clock == nil {
		e.clock = clock.RealClock{}
	}
	e.monitor = monitor.New(monitor.Options{
		Services: e.probed,
		Unhealthy: func(service, addr string, n int, err error) {
			e.unhealthy(e.base(context.Background()), service, addr, n, err)
		},
		Probed: func(service string, took time.Duration) {
			e.metrics.probes.WithLabelValues(service).Observe(took.Seconds())
		},
		Probe: e.runtimeProbe(),
		Clock: e.clock,
	})
	e.loop = reconcile.New(healer{e}, reconcile.Options{Keys: e.serviceNames, Resync: cmp.Or(opts.Resync, DefaultResync),
		Clock: e.clock, Log: e.log})
	// On a runtime that claims sets the executor scales each revision's set; the
	// controller accounts for the members the runtime replaces of its own (heal.go).
	e.exec = &rollout.Executor{Driver: opts.Driver, Healthy: e.healthy, Analyze: e.analyze, CanaryAborted: e.canaryAborted, CanaryFailing: e.canaryFailing,
		Event: func(service, id, typ, msg string) { e.event(service, id, typ, "%s", msg) }}
	return e
}

// Start opens the front doors of every service, resumes rollouts a crash interrupted,
// re-adopts running servers (admitting healthy ones to their front door without
// restarting them), and then blocks until ctx ends, when it waits for work in flight
// and closes the doors.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	e.mu.Unlock()
	if lacks := unenforced(e.caps); len(lacks) > 0 {
		e.log.Warn("the runtime does not enforce every default of kiln's servers", "runtime", e.opts.Driver.Name(), "not_enforced", strings.Join(lacks, ", "))
	}
	// A door process that outlived the last daemon serves what it was told: its doors
	// and their servers are taken as they are, and re-adopted below.
	if c, ok := e.opts.Doors.(interface {
		Config(context.Context) (door.Config, error)
	}); ok {
		cfg, err := c.Config(ctx)
		if err != nil {
			close(e.ready)
			return err
		}
		e.doors.Adopt(cfg)
		e.pruneAdopted(ctx)
	}
	// No apply until what a stop interrupted is resumed: one that came in between
	// reading the services and the running rollouts would be taken for a rollback.
	err := e.resume(ctx)
	close(e.ready)
	if err != nil {
		return err
	}
	// The controller: runtime events, the health monitor and the reconcile loop.
	e.work.Go(func() { e.watch(ctx) })
	e.work.Go(func() { e.monitor.Start(ctx) })
	e.work.Go(func() { e.loop.Start(ctx) })
	e.work.Go(func() { e.traffic.run(ctx) })
	e.work.Go(func() { e.watchCertificates(ctx) })
	<-ctx.Done()
	e.work.Wait()
	e.doors.CloseAll()
	return nil
}

// failUnstarted records as failed the revisions of sv that a stop left pending with no
// rollout: recorded by an apply that stopped before it started their rollout (the
// apply failed), they will never be rolled out.
func (e *Engine) failUnstarted(ctx context.Context, sv store.Service, running store.Rollout) {
	revs, err := e.opts.State.Revisions(ctx, sv.Name)
	if err != nil {
		e.log.Error("reading revisions", "service", sv.Name, "err", err)
		return
	}
	for _, r := range revs {
		if r.Outcome == store.OutcomePending && r.Number != sv.Current && r.Number != running.To {
			e.setOutcome(ctx, sv.Name, r.Number, store.OutcomeFailed, "not rolled out: kiln stopped before its rollout started")
		}
	}
}

// resume opens the front door of every service, resumes the rollouts (and rollbacks)
// a stop interrupted, and re-adopts every other service's servers in the background.
// It holds applying while it reads the state, so that no apply comes in between; an
// apply that came before it started its own rollout, which is not resumed again.
func (e *Engine) resume(ctx context.Context) error {
	e.applying.Lock()
	defer e.applying.Unlock()
	services, err := e.opts.State.Services(ctx)
	if err != nil {
		return err
	}
	running, err := e.opts.State.RunningRollouts(ctx)
	if err != nil {
		return err
	}
	resumed, all := map[string]store.Rollout{}, map[string]store.Rollout{}
	e.mu.Lock()
	for _, r := range running {
		all[r.Service] = r
		if !e.own[r.ID] {
			resumed[r.Service] = r
		}
	}
	e.mu.Unlock()
	for _, sv := range services {
		e.failUnstarted(ctx, sv, all[sv.Name])
		rev, err := e.opts.State.Revision(ctx, sv.Name, sv.Current)
		if err != nil {
			return err
		}
		svc, err := decodeService(rev)
		if err != nil {
			return err
		}
		if _, err := e.door(ctx, svc); err != nil {
			e.event(sv.Name, "", "error", "%v", err)
			continue
		}
		if r, ok := resumed[sv.Name]; ok && r.To == sv.Current {
			e.event(sv.Name, "", "resumed", "resuming the rollout to revision %d interrupted at %s", r.To, r.Started.Format(time.RFC3339))
			e.goRollout(r, rev)
			continue
		} else if ok {
			// kiln stopped while rolling back: finish going back to the current revision.
			e.event(sv.Name, "", "resumed", "resuming the rollback to revision %d interrupted at %s", sv.Current, r.Started.Format(time.RFC3339))
			e.work.Add(1)
			go func() {
				defer e.work.Done()
				e.finishRollback(ctx, r, rev)
			}()
			continue
		}
		e.work.Add(1)
		go func() {
			defer e.work.Done()
			if err := e.converge(ctx, rev, true); err != nil && ctx.Err() == nil {
				e.event(sv.Name, "", "error", "re-adopting servers: %v", err)
			}
		}()
	}
	return nil
}

// unenforced names the security defaults of servers that a runtime with caps does not
// enforce: kiln still runs servers there, and says so.
func unenforced(caps driver.Capabilities) []string {
	var out []string
	for _, c := range []struct {
		has  bool
		what string
	}{
		{caps.ReadOnlyRoot, "read-only root filesystem"}, {caps.Tmpfs, "private tmpfs for writable paths"},
		{caps.PIDsLimit, "PIDs limit"}, {caps.MemoryLimit, "memory limit"}, {caps.CPULimit, "CPU limit"},
		{caps.NoPrivileges, "no privileges"}, {caps.ProjectNetwork, "a network per project"}, {caps.SecretFiles, "secrets kept off the runtime's records"},
	} {
		if !c.has {
			out = append(out, c.what)
		}
	}
	return out
}

// Ready is closed once Start has opened the front doors and resumed what a stop
// interrupted (or failed to: Start then returns the error).
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// converge brings a service to rev: the work of a rollout, and of re-adopting servers
// on start (nothing is created or destroyed if they match). It holds the service's lock,
// so the controller does not heal a service while it is being changed.
//
// With readopt (a start re-adopting the servers of a deployed revision) the health
// gate skips min_healthy, as a heal does: those servers served this revision before
// the stop, and each is admitted once its check passes, so a restart holds requests
// at the front door for one probe rather than min_healthy per server.
func (e *Engine) converge(ctx context.Context, rev store.Revision, readopt bool) error {
	svc, err := decodeService(rev)
	if err != nil {
		return err
	}
	st := e.state(svc.Name)
	e.mu.Lock()
	if st.cancelHeal != nil {
		st.cancelHeal() // a heal of the revision being replaced is not waited for
	}
	e.mu.Unlock()
	st.lock.Lock()
	defer st.lock.Unlock()
	t, err := e.target(svc, rev.Number)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.targets[svc.Name] = t
	e.mu.Unlock()
	d, err := e.door(ctx, svc)
	if err != nil {
		return err
	}
	if err := e.ensureImage(ctx, svc.Image); err != nil {
		return err
	}
	run := t
	if readopt {
		run.Settings.MinHealthy = 0
	}
	if err := e.exec.Run(ctx, d, run); err != nil {
		return err
	}
	return e.proveCheck(ctx, d, t)
}

// finishRollback completes a rollback that a stop interrupted.
func (e *Engine) finishRollback(ctx context.Context, r store.Rollout, current store.Revision) {
	defer e.inRollout(r)()
	err := e.converge(ctx, current, false)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.setOutcome(ctx, r.Service, r.To, store.OutcomeFailed, "rollback failed: "+err.Error())
		e.finishRollout(ctx, r, store.RolloutFailed, err.Error())
		e.event(r.Service, "", "failed", "rollback to revision %d failed: %v", current.Number, err)
		return
	}
	e.setOutcome(ctx, r.Service, r.To, store.OutcomeRolledBack, "rolled back")
	e.finishRollout(ctx, r, store.RolloutRolledBack, "rolled back after a restart")
	e.event(r.Service, "", "rolled_back", "revision %d was rolled back; revision %d is serving", r.To, current.Number)
}

// door returns the service's front door, opening it (or moving it, when the listen
// address changed) as needed, under the daemon's context.
func (e *Engine) door(ctx context.Context, svc api.Service) (*frontdoor.Door, error) {
	d, err := e.doorOf(svc)
	if err != nil {
		return nil, err
	}
	return e.doors.Ensure(e.base(ctx), d)
}

// pendingDoor opens the front door svc needs when it has none on its listen address,
// without putting it in use (see frontdoor.Registry.Accept); nil when it has one. The
// caller closes a pending door it does not accept.
func (e *Engine) pendingDoor(ctx context.Context, svc api.Service) (*frontdoor.Door, error) {
	d, err := e.doorOf(svc)
	if err != nil {
		return nil, err
	}
	return e.doors.Pending(e.base(ctx), d)
}

// base is the daemon's context once Start has been called, else ctx: what doors and
// long-running work run under.
func (e *Engine) base(ctx context.Context) context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx != nil {
		return e.ctx
	}
	return ctx
}

// healthy is the health gate of server s (see rollout.Executor.Healthy). A server whose
// process exits fails it at once, with its exit code and last lines of output; one
// that answers its check with a failure FailureThreshold times in a row, too.
func (e *Engine) healthy(ctx context.Context, t rollout.Target, s driver.Server) error {
	if r := e.readier(); r != nil {
		return e.waitReady(ctx, r, t, s)
	}
	h := t.Health
	check := health.Check{HTTPPath: h.HTTP, TCP: h.TCP, Timeout: h.Timeout, FailAfter: h.FailureThreshold}
	gctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if w, ok := e.opts.Driver.(driver.Waiter); ok && e.caps.Wait && s.ID != "" {
		go func() {
			x, err := w.Wait(gctx, s.ID)
			if err == nil {
				cancel(e.exited(ctx, s, x))
			}
		}()
	}
	err := health.WaitHealthy(gctx, s.Address, check, h.Interval, t.Settings.MinHealthy, h.StartPeriod, h.HealthyThreshold)
	var exit *ExitError
	if cause := context.Cause(gctx); errors.As(cause, &exit) && ctx.Err() == nil {
		return exit
	}
	if err == nil {
		// The monitor checks the server with the check it passed, not with that of a
		// revision being rolled out (which may differ, or be the reason it fails).
		if d := e.doors.Get(t.Service); d != nil {
			d.Passed(s.Address, h)
		}
	}
	return err
}

func (e *Engine) ensureImage(ctx context.Context, digest string) error {
	l, ok := e.opts.Driver.(driver.ImageLoader)
	if !ok {
		return nil
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		return fmt.Errorf("image %q: %w", digest, err)
	}
	return l.EnsureImage(ctx, digest, func() (v1.Image, error) { return e.opts.Images.Image(h) })
}

// event records an event and passes it to subscribers. Its subject kind, step and
// tone come from its type (api.EventTypeInfo); a service's event while a rollout of the
// service runs carries the rollout's ID.
func (e *Engine) event(service, serverID, typ, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	info := api.EventTypeInfo(typ)
	var rollout int64
	if info.Subject == api.SubjectService {
		e.mu.Lock()
		rollout = e.rollouts[service]
		e.mu.Unlock()
	}
	rec := store.Event{Kind: info.Subject, Service: service, ServerID: serverID, RolloutID: rollout, Step: info.Step, Tone: info.Tone,
		Type: typ, Message: msg}
	ev, err := e.opts.State.AddEvent(context.Background(), rec)
	if err != nil {
		// Still logged below and passed to subscribers: only its record is lost.
		e.stateWriteFailed("event", err, "service", service, "event", typ, "message", msg)
		ev = rec
		ev.Time = e.clock.Now()
	}
	e.log.Info(msg, "service", service, "server_id", serverID, "event", typ)
	ae := apiEvent(ev)
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- ae:
		default: // a slow subscriber misses events rather than stalling rollouts
		}
	}
}

// apiEvent is a recorded event as the API shows it.
func apiEvent(ev store.Event) api.Event {
	return api.Event{ID: ev.ID, Time: ev.Time, Kind: ev.Kind, Service: ev.Service, ServerID: ev.ServerID, RolloutID: ev.RolloutID,
		Type: ev.Type, Step: ev.Step, Tone: ev.Tone, Message: ev.Message}
}

// inRollout marks the service's events as steps of rollout r until the returned
// function is called.
func (e *Engine) inRollout(r store.Rollout) (done func()) {
	e.mu.Lock()
	e.rollouts[r.Service] = r.ID
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		if e.rollouts[r.Service] == r.ID {
			delete(e.rollouts, r.Service)
		}
		delete(e.own, r.ID) // ended: not running, so not one Start could resume
		e.mu.Unlock()
	}
}

// stateWriteFailed logs and counts a write to the state that failed where its caller
// cannot act on the error (the work it records is done); attrs say what it was about.
func (e *Engine) stateWriteFailed(write string, err error, attrs ...any) {
	e.metrics.stateWrites.WithLabelValues(write).Inc()
	e.log.Error("writing the state", append([]any{"write", write, "err", err}, attrs...)...)
}

// setOutcome records a revision's outcome; a failure is logged and counted.
func (e *Engine) setOutcome(ctx context.Context, service string, revision int64, o store.Outcome, detail string) {
	if err := e.opts.State.SetOutcome(context.WithoutCancel(ctx), service, revision, o, detail); err != nil {
		e.stateWriteFailed("outcome", err, "service", service, "revision", revision, "outcome", o, "detail", detail)
	}
}

// finishRollout records the end of a rollout; a failure is logged and counted.
func (e *Engine) finishRollout(ctx context.Context, r store.Rollout, state store.RolloutState, detail string) {
	if err := e.opts.State.FinishRollout(context.WithoutCancel(ctx), r.ID, state, detail); err != nil {
		e.stateWriteFailed("rollout", err, "service", r.Service, "rollout", r.ID, "revision", r.To, "state", state, "detail", detail)
	}
}

// Subscribe returns a channel of events from now on, until cancel is called.
func (e *Engine) Subscribe() (events <-chan api.Event, cancel func()) {
	ch := make(chan api.Event, 256)
	e.mu.Lock()
	e.subs[ch] = true
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		delete(e.subs, ch)
		e.mu.Unlock()
	}
}

// target turns a service's settings into a rollout target.
func (e *Engine) target(svc api.Service, revision int64) (rollout.Target, error) {
	ss, err := e.serverSpec(svc, revision)
	if err != nil {
		return rollout.Target{}, err
	}
	return rollout.Target{
		Service:  svc.Name,
		Revision: revision,
		Spec:     ss,
		Replicas: svc.Replicas,
		Settings: rollout.Settings{
			Strategy: svc.Update.Strategy, MaxSurge: svc.Update.MaxSurge, MaxUnavailable: svc.Update.MaxUnavailable,
			MinHealthy: svc.Update.MinHealthy, ProgressDeadline: svc.Update.ProgressDeadline, KeepOld: svc.Update.KeepOld,
			Canary: resolve.SpecService(svc).Update.Canary,
		},
		Health: spec.Health{
			HTTP: svc.Health.HTTP, TCP: svc.Health.TCP, Interval: svc.Health.Interval, Timeout: svc.Health.Timeout,
			StartPeriod: svc.Health.StartPeriod, HealthyThreshold: svc.Health.HealthyThreshold, UnhealthyThreshold: svc.Health.UnhealthyThreshold,
			FailureThreshold: svc.Health.FailureThreshold,
		},
	}, nil
}

func decodeService(r store.Revision) (api.Service, error) {
	var svc api.Service
	if err := json.Unmarshal([]byte(r.Spec), &svc); err != nil {
		return svc, fmt.Errorf("revision %d of %s is unreadable: %w", r.Number, r.Service, err)
	}
	return svc, nil
}

// URL is where a service's front door answers.
func URL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if host == "0.0.0.0" || host == "::" || host == "" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

var errNoPrevious = errors.New("no earlier deployed revision")

var _ rollout.Door = (*frontdoor.Door)(nil)
