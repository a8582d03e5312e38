package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"go.uber.org/goleak"
	testclock "k8s.io/utils/clock/testing"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/health"
)

func TestMain(m *testing.M) {
	// The health probes' HTTP client keeps connections to servers that are gone
	// until its idle timeout; nothing of the executor's own may outlive a test.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}

// door is a front door in memory: the set of addresses in rotation. It records the
// fewest servers it had in rotation once armed.
type door struct {
	mu       sync.Mutex
	in       map[string]bool
	armed    bool
	fewest   int
	onUpdate func()
}

func newDoor() *door { return &door{in: map[string]bool{}, fewest: 1 << 30} }

func (d *door) Update(ctx context.Context, add, remove []string) error {
	d.mu.Lock()
	for _, a := range add {
		d.in[a] = true
	}
	for _, a := range remove {
		delete(d.in, a)
	}
	if d.armed {
		d.fewest = min(d.fewest, len(d.in))
	}
	f := d.onUpdate
	d.mu.Unlock()
	if f != nil {
		f()
	}
	return ctx.Err()
}

func (d *door) Has(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.in[addr]
}

func (d *door) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.in)
}

func (d *door) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed, d.fewest = true, len(d.in)
}

// rig is an executor on simdriver through the fault injector, on a fake clock, with
// a front door; it samples the servers the driver lists at every driver call.
type rig struct {
	t      *testing.T
	sim    *simdriver.Driver
	inj    *faultdriver.Injector
	clock  *testclock.FakeClock
	door   *door
	exec   *Executor
	mu     sync.Mutex
	most   int // most servers running at once (listed and not exited), once armed
	listed int // most servers listed at once (exited ones awaiting removal too)
	calls  map[faultdriver.Op]int
	// stopper: the runtime claims driver.Stopper (old servers are removed while the
	// next batch starts).
	stopper bool
	armed   bool
	events  []string
	// unhealthy, when set, is the health gate of the servers of a revision: a fake that
	// forces a failure, the simulated servers being always healthy.
	unhealthy map[int64]func(ctx context.Context) error
	onCall    func(c faultdriver.Call)
}

const callTimeout = 30 * time.Second

func newRig(t *testing.T) *rig { return newRigOn(t, true) }

// newRigOn is newRig on a runtime that claims driver.Stopper (as Docker does) if
// stopper, and on one that does not otherwise (the executor's other path: every old
// server is removed before the next batch starts).
func newRigOn(t *testing.T, stopper bool) *rig {
	r := &rig{t: t, sim: simdriver.New(), clock: testclock.NewFakeClock(time.Unix(1e9, 0)), door: newDoor(),
		calls: map[faultdriver.Op]int{}, stopper: stopper}
	t.Cleanup(func() { r.sim.Close() })
	loadImages(t, r.sim)
	var d driver.Driver = r.sim
	if !stopper {
		d = destroyOnly{r.sim}
	}
	r.inj = faultdriver.New(d, 1)
	r.inj.OnCall(func(ctx context.Context, c faultdriver.Call) error {
		r.sample()
		r.mu.Lock()
		r.calls[c.Op]++
		f := r.onCall
		r.mu.Unlock()
		if f != nil {
			f(c)
		}
		return nil
	})
	r.door.onUpdate = r.sample
	r.exec = &Executor{Driver: r.inj.Driver(), Clock: r.clock, CallTimeout: callTimeout, Healthy: r.healthy,
		Event: func(service, serverID, typ, message string) {
			r.mu.Lock()
			r.events = append(r.events, typ+": "+message)
			r.mu.Unlock()
			if typ == "retry" {
				// The wait before a retry has started: let it pass at once.
				r.clock.Step(MaxBackoff)
			}
		}}
	return r
}

// destroyOnly is the simulated runtime claiming no driver.Stopper.
type destroyOnly struct{ *simdriver.Driver }

func (d destroyOnly) Capabilities() driver.Capabilities {
	c := d.Driver.Capabilities()
	c.Stop = false
	return c
}

// paths are the executor's two ways of retiring an old server in a rolling update.
var paths = []struct {
	name    string
	stopper bool
}{{"stop then remove", true}, {"destroy", false}}

// healthy is the real health gate: HTTP probes of the simulated server.
func (r *rig) healthy(ctx context.Context, t Target, s driver.Server) error {
	r.mu.Lock()
	f := r.unhealthy[s.Revision]
	r.mu.Unlock()
	if f != nil {
		return f(ctx)
	}
	return health.WaitHealthy(ctx, s.Address, health.Check{HTTPPath: "/", Timeout: time.Second}, 10*time.Millisecond, 0, 0, 1)
}

func (r *rig) sample() {
	servers, err := r.sim.List(context.Background(), driver.Selector{Project: "p", Service: "web"})
	if err != nil {
		r.t.Error(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.armed {
		running := 0
		for _, s := range servers {
			if s.State != driver.StateExited {
				running++
			}
		}
		r.most = max(r.most, running)
		r.listed = max(r.listed, len(servers))
	}
}

func (r *rig) arm() {
	r.door.arm()
	r.mu.Lock()
	r.armed = true
	r.mu.Unlock()
}

func (r *rig) servers() map[int64]int {
	servers, err := r.sim.List(context.Background(), driver.Selector{Project: "p", Service: "web"})
	if err != nil {
		r.t.Fatal(err)
	}
	by := map[int64]int{}
	for _, s := range servers {
		by[s.Revision]++
		if !r.door.Has(s.Address) {
			by[-1]++ // listed but out of rotation
		}
	}
	return by
}

// callsOf is how many calls of op the driver had.
func (r *rig) callsOf(op faultdriver.Op) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[op]
}

func (r *rig) eventCount(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if strings.HasPrefix(e, typ+": ") {
			n++
		}
	}
	return n
}

func target(rev int64, replicas int, s Settings) Target {
	if s.ProgressDeadline == 0 {
		s.ProgressDeadline = time.Minute
	}
	return Target{Service: "web", Revision: rev, Replicas: replicas, Settings: s,
		Spec: driver.ServerSpec{Project: "p", Service: "web", Image: revisionImage(rev).digest, Port: 8080}}
}

// testImage is an image of one revision: an empty image whose config names it, so
// that every revision has its own digest.
type testImage struct {
	img    v1.Image
	digest string
}

func revisionImage(rev int64) testImage {
	img, err := mutate.Config(empty.Image, v1.Config{Env: []string{fmt.Sprintf("REVISION=%d", rev)}})
	if err != nil {
		panic(err)
	}
	h, err := img.Digest()
	if err != nil {
		panic(err)
	}
	return testImage{img, h.String()}
}

// loadImages gives the simulated runtime the images of the revisions tests use.
func loadImages(t *testing.T, sim *simdriver.Driver) {
	for rev := int64(1); rev <= 3; rev++ {
		im := revisionImage(rev)
		if err := sim.EnsureImage(context.Background(), im.digest, func() (v1.Image, error) { return im.img, nil }); err != nil {
			t.Fatal(err)
		}
	}
}

var errBoom = errors.New("boom")

// The strategies keep within their bounds: never more than replicas + max_surge
// servers running, never fewer than replicas - max_unavailable in rotation, and (on a
// runtime that says when a process has ended) at most one batch of stopped servers
// awaiting removal.
func TestStrategies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
		s        Settings
		most     int
		fewest   int
		awaiting int // stopped servers that may be listed beside most
	}{
		{"rolling surge 1", 4, Settings{Strategy: "rolling", MaxSurge: 1}, 5, 4, 1},
		{"rolling surge 2", 5, Settings{Strategy: "rolling", MaxSurge: 2}, 7, 5, 2},
		{"rolling unavailable 1", 4, Settings{Strategy: "rolling", MaxUnavailable: 1}, 4, 3, 1},
		{"rolling unavailable 2", 5, Settings{Strategy: "rolling", MaxUnavailable: 2}, 5, 3, 2},
		{"rolling surge 1 unavailable 1", 4, Settings{Strategy: "rolling", MaxSurge: 1, MaxUnavailable: 1}, 5, 3, 1},
		{"blue-green", 3, Settings{Strategy: "blue-green"}, 6, 3, 0},
	} {
		for _, path := range paths {
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				ctx := t.Context()
				r := newRigOn(t, path.stopper)
				if err := r.exec.Run(ctx, r.door, target(1, tc.replicas, tc.s)); err != nil {
					t.Fatalf("first rollout: %v", err)
				}
				// A removal slower than the next batch's start, as a runtime's teardown
				// is: the stopped servers awaiting it must still be one batch at most.
				r.inj.Set(faultdriver.OpDestroy, faultdriver.Fault{Delay: 20 * time.Millisecond})
				r.arm()
				if err := r.exec.Run(ctx, r.door, target(2, tc.replicas, tc.s)); err != nil {
					t.Fatalf("rollout to revision 2: %v", err)
				}
				if got := r.servers(); got[2] != tc.replicas || len(got) != 1 {
					t.Errorf("servers by revision (-1: out of rotation) = %v, want %d of revision 2, all in rotation", got, tc.replicas)
				}
				listed := tc.most
				if path.stopper {
					listed += tc.awaiting
				}
				if r.most > tc.most || r.listed > listed || r.door.fewest < tc.fewest {
					t.Errorf("at worst %d servers running, %d listed and %d in rotation; bounds %d, %d and %d",
						r.most, r.listed, r.door.fewest, tc.most, listed, tc.fewest)
				}
				want := 0 // blue-green destroys the old set once it is out of rotation
				if tc.s.Strategy == "rolling" && path.stopper {
					want = tc.replicas // every old server
				}
				if stops := r.callsOf(faultdriver.OpStop); stops != want {
					t.Errorf("%d Stop calls, want %d", stops, want)
				}
				// Level-based: running it again changes nothing.
				calls := r.inj.Calls()
				if err := r.exec.Run(ctx, r.door, target(2, tc.replicas, tc.s)); err != nil || r.inj.Calls() != calls+1 {
					t.Errorf("a converged Run: %v, %d driver calls (want 1 List)", err, r.inj.Calls()-calls)
				}
			})
		}
	}
}

// A step that fails destroys the servers it created and leaves the old ones serving;
// the caller's rollback (Run back to the old target) converges.
func TestFaults(t *testing.T) {
	rolling := Settings{Strategy: "rolling", MaxSurge: 1}
	for _, tc := range []struct {
		name  string
		s     Settings
		setup func(r *rig)
		want  error // what Run to revision 2 fails with; nil: it converges
		// retries is how many retry events Run records.
		retries int
		stopper bool // only on a runtime that says when a process has ended
	}{
		{name: "no progress (rolling)", s: rolling, want: ErrNoProgress, setup: func(r *rig) {
			r.unhealthy = map[int64]func(context.Context) error{2: func(ctx context.Context) error {
				r.clock.Step(time.Minute) // past the progress deadline
				<-ctx.Done()
				return context.Cause(ctx)
			}}
		}},
		{name: "no progress (blue-green)", s: Settings{Strategy: "blue-green"}, want: ErrNoProgress, setup: func(r *rig) {
			r.unhealthy = map[int64]func(context.Context) error{2: func(ctx context.Context) error {
				r.clock.Step(time.Minute)
				<-ctx.Done()
				return context.Cause(ctx)
			}}
		}},
		{name: "server fails its check", s: rolling, want: ErrServerFailed, setup: func(r *rig) {
			r.unhealthy = map[int64]func(context.Context) error{2: func(ctx context.Context) error {
				return fmt.Errorf("%w: HTTP 500", health.ErrDefinitive)
			}}
		}},
		{name: "create fails", s: rolling, want: errBoom, retries: DefaultAttempts - 1, setup: func(r *rig) {
			r.inj.Set(faultdriver.OpCreate, faultdriver.Fault{Err: errBoom})
		}},
		{name: "create fails once", s: rolling, retries: 1, setup: func(r *rig) {
			r.inj.Set(faultdriver.OpCreate, faultdriver.Fault{Err: errBoom})
			r.onCall = func(c faultdriver.Call) {
				if c.Op == faultdriver.OpCreate {
					r.inj.Set(faultdriver.OpCreate) // only the first Create fails
				}
			}
		}},
		{name: "create hangs", s: rolling, want: ErrDriverTimeout, retries: DefaultAttempts - 1, setup: func(r *rig) {
			r.inj.Set(faultdriver.OpCreate, faultdriver.Fault{Hang: true})
			r.onCall = func(c faultdriver.Call) {
				if c.Op == faultdriver.OpCreate {
					r.clock.Step(callTimeout) // the call's timeout has started: it passes
				}
			}
		}},
		// A long progress deadline: the clock steps of the hung calls must not fail the
		// next batch's gate, which starts while an old server is removed.
		{name: "destroy hangs", s: rolling, want: ErrDriverTimeout, retries: DefaultAttempts - 1, setup: func(r *rig) {
			r.inj.Set(faultdriver.OpDestroy, faultdriver.Fault{Hang: true})
			r.onCall = func(c faultdriver.Call) {
				if c.Op != faultdriver.OpDestroy {
					return
				}
				if !r.stopper {
					r.clock.Step(callTimeout)
					return
				}
				// The next batch starts while the removal hangs: the clock moves on once
				// that batch's server is in rotation (the rollout then waits for the
				// removal), so that no timeout of that batch's own calls passes too.
				go func() {
					for r.eventCount("admitted") < 5 { // 3 of revision 1, 2 of revision 2
						time.Sleep(time.Millisecond) // polling a condition, not waiting for time
					}
					r.clock.Step(callTimeout)
				}()
			}
		}},
		{name: "stop hangs", s: rolling, want: ErrDriverTimeout, retries: DefaultAttempts - 1, stopper: true, setup: func(r *rig) {
			r.inj.Set(faultdriver.OpStop, faultdriver.Fault{Hang: true})
			r.onCall = func(c faultdriver.Call) {
				if c.Op == faultdriver.OpStop {
					r.clock.Step(callTimeout)
				}
			}
		}},
		{name: "list fails", s: rolling, want: errBoom, retries: DefaultAttempts - 1, setup: func(r *rig) {
			r.inj.Set(faultdriver.OpList, faultdriver.Fault{Err: errBoom})
		}},
		{name: "list fails once", s: rolling, retries: 1, setup: func(r *rig) {
			r.inj.Set(faultdriver.OpList, faultdriver.Fault{Err: errBoom})
			r.onCall = func(c faultdriver.Call) {
				if c.Op == faultdriver.OpList {
					r.inj.Set(faultdriver.OpList)
				}
			}
		}},
		{name: "a third of the calls fail", s: rolling, setup: func(r *rig) {
			// Seeded: the calls this picks fail once or twice, never three times running.
			r.inj.Set(faultdriver.OpCreate, faultdriver.Fault{P: 0.3, Err: errBoom})
			r.inj.Set(faultdriver.OpDestroy, faultdriver.Fault{P: 0.3, Err: errBoom})
			r.inj.Set(faultdriver.OpStop, faultdriver.Fault{P: 0.3, Err: errBoom})
		}, retries: -1},
	} {
		for _, path := range paths {
			if tc.stopper && !path.stopper {
				continue
			}
			t.Run(tc.name+"/"+path.name, func(t *testing.T) {
				ctx := t.Context()
				r := newRigOn(t, path.stopper)
				const replicas = 3
				if err := r.exec.Run(ctx, r.door, target(1, replicas, tc.s)); err != nil {
					t.Fatalf("first rollout: %v", err)
				}
				r.arm()
				r.mu.Lock()
				tc.setup(r)
				r.mu.Unlock()
				err := r.exec.Run(ctx, r.door, target(2, replicas, tc.s))
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("rollout to revision 2: %v, want %v", err, tc.want)
				}
				if n := r.eventCount("retry"); tc.retries >= 0 && n != tc.retries {
					t.Errorf("%d retries, want %d", n, tc.retries)
				}
				most := replicas + 1
				if tc.s.Strategy == "blue-green" {
					most = 2 * replicas
				}
				listed := most
				if path.stopper && tc.s.Strategy == "rolling" {
					listed++ // an old server stopped, awaiting removal
				}
				if r.most > most || r.listed > listed || r.door.fewest < replicas {
					t.Errorf("at worst %d servers running, %d listed and %d in rotation; bounds %d, %d and %d", r.most, r.listed, r.door.fewest, most, listed, replicas)
				}
				got := r.servers()
				if tc.want == nil {
					if got[2] != replicas || len(got) != 1 {
						t.Errorf("servers by revision (-1: out of rotation) = %v, want %d of revision 2 in rotation", got, replicas)
					}
					return
				}
				// A removal that hangs fails the rollout once the next batch has started.
				started := 1
				if path.stopper && tc.name == "destroy hangs" {
					started = 2
				}
				if got[1] < replicas && tc.want != ErrDriverTimeout || got[2] > started || tc.want != ErrDriverTimeout && got[2] > 0 {
					t.Errorf("after the failure, servers by revision (-1: out of rotation) = %v", got)
				}
				// The caller rolls back: Run to the old target, faults gone.
				r.mu.Lock()
				r.unhealthy, r.onCall = nil, nil
				r.mu.Unlock()
				r.inj.Set(faultdriver.OpCreate)
				r.inj.Set(faultdriver.OpDestroy)
				r.inj.Set(faultdriver.OpStop)
				r.inj.Set(faultdriver.OpList)
				if err := r.exec.Run(ctx, r.door, target(1, replicas, tc.s)); err != nil {
					t.Fatalf("rolling back: %v", err)
				}
				if got := r.servers(); got[1] != replicas || len(got) != 1 || r.door.count() != replicas {
					t.Errorf("after the rollback, servers by revision (-1: out of rotation) = %v, %d in rotation", got, r.door.count())
				}
			})
		}
	}
}

// keep_old holds the old set for its time on the executor's clock before destroying it.
func TestBlueGreenKeepOld(t *testing.T) {
	ctx := t.Context()
	r := newRig(t)
	s := Settings{Strategy: "blue-green", KeepOld: time.Hour}
	if err := r.exec.Run(ctx, r.door, target(1, 2, s)); err != nil {
		t.Fatal(err)
	}
	switched := r.eventCount("switched")
	done := make(chan error, 1)
	go func() { done <- r.exec.Run(ctx, r.door, target(2, 2, s)) }()
	// Switched, the old set waits out keep_old: once its timer is the one waiter, the
	// old servers are still there, out of rotation.
	for r.eventCount("switched") == switched || !r.clock.HasWaiters() {
		select {
		case err := <-done:
			t.Fatalf("Run returned before keep_old: %v", err)
		default:
		}
		time.Sleep(time.Millisecond) // polling a condition, not waiting for time
	}
	if got := r.servers(); got[1] != 2 || got[2] != 2 || got[-1] != 2 {
		t.Errorf("during keep_old, servers by revision (-1: out of rotation) = %v, want 2 old out of rotation and 2 new", got)
	}
	r.clock.Step(time.Hour)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := r.servers(); got[2] != 2 || len(got) != 1 {
		t.Errorf("after keep_old, servers by revision = %v", got)
	}
}

// A rollout stopped half-way left a new server beside all the old ones: running it
// again counts that server against max_surge and retires an old one before creating.
func TestResumedRolloutKeepsSurge(t *testing.T) {
	ctx := t.Context()
	r := newRig(t)
	s := Settings{Strategy: "rolling", MaxSurge: 1}
	if err := r.exec.Run(ctx, r.door, target(1, 3, s)); err != nil {
		t.Fatal(err)
	}
	left := target(2, 3, s).Spec
	left.Revision = 2
	if _, err := r.sim.Create(ctx, left); err != nil {
		t.Fatal(err)
	}
	r.arm()
	if err := r.exec.Run(ctx, r.door, target(2, 3, s)); err != nil {
		t.Fatal(err)
	}
	if got := r.servers(); got[2] != 3 || len(got) != 1 {
		t.Errorf("servers by revision (-1: out of rotation) = %v", got)
	}
	if r.most > 4 || r.door.fewest < 3 {
		t.Errorf("at worst %d servers listed and %d in rotation; bounds 4 and 3", r.most, r.door.fewest)
	}
}

// Servers of the target out of rotation (a restarted daemon's new front door) whose
// gate is cut short by the end of ctx (a stop, or a heal cancelled by a rollout) are
// no failure: they stay, and the next Run admits them without creating any. Were they
// destroyed, as servers that fail their gate are, the fleet would be one short until a
// heal replaced them.
func TestAdmissionCutShortKeepsServers(t *testing.T) {
	for _, tc := range []struct {
		name string
		rig  func(t *testing.T) *rig
	}{
		{"one by one", newRig},
		{"sets", func(t *testing.T) *rig { r, _ := newSetRig(t); return r }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rig(t)
			tg := target(1, 3, Settings{Strategy: "rolling", MaxSurge: 1})
			if err := r.exec.Run(t.Context(), r.door, tg); err != nil {
				t.Fatal(err)
			}
			r.door = newDoor() // as after a restart: none in rotation
			ctx, cancel := context.WithCancel(t.Context())
			var gated sync.Once
			r.mu.Lock()
			// A fake gate, the simulated servers being healthy at once: the first one
			// stays in its gate until ctx ends; the others pass.
			r.unhealthy = map[int64]func(context.Context) error{1: func(gctx context.Context) error {
				held := false
				gated.Do(func() { held = true })
				if !held {
					return nil
				}
				cancel()
				<-gctx.Done()
				return gctx.Err()
			}}
			r.mu.Unlock()
			created := r.eventCount("created")
			if err := r.exec.Run(ctx, r.door, tg); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run cut short in a gate: %v, want %v", err, context.Canceled)
			}
			if got := r.servers(); got[1] != 3 || r.eventCount("destroyed") != 0 {
				t.Errorf("after the Run cut short, servers by revision (-1: out of rotation) = %v, %d destroyed; want 3 of revision 1, none destroyed",
					got, r.eventCount("destroyed"))
			}
			r.mu.Lock()
			r.unhealthy = nil
			r.mu.Unlock()
			if err := r.exec.Run(t.Context(), r.door, tg); err != nil {
				t.Fatal(err)
			}
			if got := r.servers(); got[1] != 3 || len(got) != 1 || r.eventCount("created") != created {
				t.Errorf("after the next Run, servers by revision (-1: out of rotation) = %v, %d created; want 3 of revision 1 in rotation, none created",
					got, r.eventCount("created")-created)
			}
		})
	}
}
