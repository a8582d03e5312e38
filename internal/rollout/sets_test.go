package rollout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/health"
)

// The set calls, as the fault wrapper of this file names them.
const (
	opEnsureSet faultdriver.Op = "ensure_set"
	opEvict     faultdriver.Op = "evict"
	opMembers   faultdriver.Op = "members"
	opSets      faultdriver.Op = "sets"
	opDeleteSet faultdriver.Op = "delete_set"
)

// setFaults is a fault wrapper of the simulated runtime's sets: the core calls and
// Watch go through the rig's fault injector (its faults and hook), the set calls
// through this wrapper's own faults, with the same hook. It claims Sets only when sets
// is true.
type setFaults struct {
	driver.Driver // the injector's view
	r             *rig
	sets          bool

	mu     sync.Mutex
	rnd    *rand.Rand
	faults map[faultdriver.Op]faultdriver.Fault
	calls  map[faultdriver.Op]int
	// pending is a fake that forces the members of a revision to stay pending, as pods
	// that cannot be scheduled do: Members reports them so.
	pending int64
}

var (
	_ driver.SetDriver = (*setFaults)(nil)
	_ driver.Watcher   = (*setFaults)(nil)
	_ driver.Capable   = (*setFaults)(nil)
)

// newSetRig is the rig on the simulated runtime's sets.
func newSetRig(t *testing.T) (*rig, *setFaults) {
	r := newRig(t)
	f := &setFaults{Driver: r.inj.Driver(), r: r, sets: true, rnd: rand.New(rand.NewPCG(1, 2)),
		faults: map[faultdriver.Op]faultdriver.Fault{}, calls: map[faultdriver.Op]int{}}
	r.inj.OnCall(func(ctx context.Context, c faultdriver.Call) error {
		f.count(c.Op)
		r.hook(c)
		return nil
	})
	r.exec.Driver = f
	return r, f
}

// hook samples the fleet and calls the test's hook, as the injector's does.
func (r *rig) hook(c faultdriver.Call) {
	r.sample()
	r.mu.Lock()
	f := r.onCall
	r.mu.Unlock()
	if f != nil {
		f(c)
	}
}

func (f *setFaults) count(op faultdriver.Op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
}

func (f *setFaults) callsOf(ops ...faultdriver.Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, op := range ops {
		n += f.calls[op]
	}
	return n
}

// set replaces the fault of op; no fault: calls pass through.
func (f *setFaults) set(op faultdriver.Op, fault ...faultdriver.Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, op)
	if len(fault) > 0 {
		f.faults[op] = fault[0]
	}
}

func (f *setFaults) before(ctx context.Context, op faultdriver.Op) error {
	f.count(op)
	// The fault is drawn before the hook, as the injector's: a hook that clears it
	// lets the next call through.
	f.mu.Lock()
	fault, ok := f.faults[op]
	if ok && fault.P > 0 && f.rnd.Float64() >= fault.P {
		ok = false
	}
	f.mu.Unlock()
	f.r.hook(faultdriver.Call{Op: op})
	switch {
	case !ok:
		return nil
	case fault.Hang:
		<-ctx.Done()
		return fmt.Errorf("%s (hung by a fault): %w", op, ctx.Err())
	default:
		return fmt.Errorf("%s: %w", op, fault.Err)
	}
}

func (f *setFaults) Capabilities() driver.Capabilities {
	c := f.r.sim.Capabilities()
	c.Sets = f.sets
	return c
}

func (f *setFaults) Watch(ctx context.Context) (<-chan driver.Event, error) {
	return f.Driver.(driver.Watcher).Watch(ctx)
}

func (f *setFaults) EnsureSet(ctx context.Context, spec driver.ServerSpec, replicas int) error {
	if err := f.before(ctx, opEnsureSet); err != nil {
		return err
	}
	return f.r.sim.EnsureSet(ctx, spec, replicas)
}

func (f *setFaults) Evict(ctx context.Context, id driver.ServerID) error {
	if err := f.before(ctx, opEvict); err != nil {
		return err
	}
	return f.r.sim.Evict(ctx, id)
}

func (f *setFaults) Members(ctx context.Context, ref driver.SetRef) ([]driver.Server, error) {
	if err := f.before(ctx, opMembers); err != nil {
		return nil, err
	}
	members, err := f.r.sim.Members(ctx, ref)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range members {
		if members[i].Revision == f.pending {
			members[i].State, members[i].Address = driver.StatePending, ""
		}
	}
	return members, err
}

func (f *setFaults) Sets(ctx context.Context, sel driver.Selector) ([]driver.Set, error) {
	if err := f.before(ctx, opSets); err != nil {
		return nil, err
	}
	return f.r.sim.Sets(ctx, sel)
}

func (f *setFaults) DeleteSet(ctx context.Context, ref driver.SetRef) error {
	if err := f.before(ctx, opDeleteSet); err != nil {
		return err
	}
	return f.r.sim.DeleteSet(ctx, ref)
}

// setSizes are the sizes of the service's sets, by revision.
func (r *rig) setSizes() map[int64]int {
	sets, err := r.sim.Sets(context.Background(), driver.Selector{Project: "p", Service: "web"})
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[int64]int{}
	for _, s := range sets {
		out[s.Ref.Revision] = s.Replicas
	}
	return out
}

// inSets counts the servers listed that are members of a set of their revision.
func (r *rig) inSets() int {
	servers, err := r.sim.List(context.Background(), driver.Selector{Project: "p", Service: "web"})
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0
	for _, s := range servers {
		members, err := r.sim.Members(context.Background(), driver.SetOf(s.Spec))
		if err != nil {
			r.t.Fatal(err)
		}
		for _, m := range members {
			if m.ID == s.ID {
				n++
			}
		}
	}
	return n
}

// On sets, the strategies keep the same bounds as one by one, scaling the revision's
// set instead of creating servers, and leave no set of an old revision.
func TestSetStrategies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
		s        Settings
		most     int
		fewest   int
	}{
		{"rolling surge 1", 4, Settings{Strategy: "rolling", MaxSurge: 1}, 5, 4},
		{"rolling surge 2", 5, Settings{Strategy: "rolling", MaxSurge: 2}, 7, 5},
		{"rolling unavailable 1", 4, Settings{Strategy: "rolling", MaxUnavailable: 1}, 4, 3},
		{"rolling unavailable 2", 5, Settings{Strategy: "rolling", MaxUnavailable: 2}, 5, 3},
		{"rolling surge 1 unavailable 1", 4, Settings{Strategy: "rolling", MaxSurge: 1, MaxUnavailable: 1}, 5, 3},
		{"blue-green", 3, Settings{Strategy: "blue-green"}, 6, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			r, f := newSetRig(t)
			if err := r.exec.Run(ctx, r.door, target(1, tc.replicas, tc.s)); err != nil {
				t.Fatalf("first rollout: %v", err)
			}
			r.arm()
			created, admitted, destroyed := r.eventCount("created"), r.eventCount("admitted"), r.eventCount("destroyed")
			if err := r.exec.Run(ctx, r.door, target(2, tc.replicas, tc.s)); err != nil {
				t.Fatalf("rollout to revision 2: %v", err)
			}
			if got := r.servers(); got[2] != tc.replicas || len(got) != 1 {
				t.Errorf("servers by revision (-1: out of rotation) = %v, want %d of revision 2, all in rotation", got, tc.replicas)
			}
			if got := r.setSizes(); got[2] != tc.replicas || len(got) != 1 {
				t.Errorf("set sizes by revision = %v, want only revision 2's, of %d", got, tc.replicas)
			}
			if n := r.inSets(); n != tc.replicas || f.callsOf(faultdriver.OpCreate) != 0 {
				t.Errorf("%d servers in sets, %d made by Create; want %d and none", n, f.callsOf(faultdriver.OpCreate), tc.replicas)
			}
			if r.most > tc.most || r.door.fewest < tc.fewest {
				t.Errorf("at worst %d servers listed and %d in rotation; bounds %d and %d", r.most, r.door.fewest, tc.most, tc.fewest)
			}
			// The same steps are told as one by one: each server created, admitted (in
			// a batch, for blue-green), each old one destroyed.
			if tc.s.Strategy == "blue-green" {
				admitted -= tc.replicas
			}
			if c, a, d := r.eventCount("created")-created, r.eventCount("admitted")-admitted, r.eventCount("destroyed")-destroyed; c != tc.replicas || a != tc.replicas || d != tc.replicas {
				t.Errorf("events: %d created, %d admitted, %d destroyed; want %d each", c, a, d, tc.replicas)
			}
			// Level-based: running it again changes nothing.
			mutating := func() int {
				return f.callsOf(opEnsureSet, opEvict, opDeleteSet, faultdriver.OpCreate, faultdriver.OpDestroy)
			}
			before := mutating()
			if err := r.exec.Run(ctx, r.door, target(2, tc.replicas, tc.s)); err != nil || mutating() != before {
				t.Errorf("a converged Run: %v, %d changing calls (want none)", err, mutating()-before)
			}
		})
	}
}

// On sets, a step that fails evicts the members it added and leaves the old servers
// serving, its revision's set deleted; the caller's rollback (Run back to the old
// target) converges.
func TestSetFaults(t *testing.T) {
	rolling := Settings{Strategy: "rolling", MaxSurge: 1}
	hangs := func(r *rig, op faultdriver.Op) func(c faultdriver.Call) {
		return func(c faultdriver.Call) {
			if c.Op == op {
				r.clock.Step(callTimeout) // the call's timeout has started: it passes
			}
		}
	}
	polls := func(r *rig) func(c faultdriver.Call) {
		return func(c faultdriver.Call) {
			if c.Op == opMembers {
				r.clock.Step(memberPoll) // the poll's timer has started: it passes
			}
		}
	}
	for _, tc := range []struct {
		name  string
		s     Settings
		setup func(r *rig, f *setFaults)
		want  error // what Run to revision 2 fails with; nil: it converges
		// retries is how many retry events Run records; -1: any number.
		retries int
		// after, if set, checks that the faults did happen.
		after func(t *testing.T, r *rig)
	}{
		{name: "no progress (rolling)", s: rolling, want: ErrNoProgress, setup: func(r *rig, f *setFaults) {
			r.unhealthy = map[int64]func(context.Context) error{2: func(ctx context.Context) error {
				r.clock.Step(time.Minute) // past the progress deadline
				<-ctx.Done()
				return context.Cause(ctx)
			}}
		}},
		{name: "no progress (blue-green)", s: Settings{Strategy: "blue-green"}, want: ErrNoProgress, setup: func(r *rig, f *setFaults) {
			r.unhealthy = map[int64]func(context.Context) error{2: func(ctx context.Context) error {
				r.clock.Step(time.Minute)
				<-ctx.Done()
				return context.Cause(ctx)
			}}
		}},
		{name: "server fails its check", s: rolling, want: ErrServerFailed, setup: func(r *rig, f *setFaults) {
			r.unhealthy = map[int64]func(context.Context) error{2: func(ctx context.Context) error {
				return fmt.Errorf("%w: HTTP 500", health.ErrDefinitive)
			}}
		}},
		{name: "members stay pending (rolling)", s: rolling, want: ErrNoProgress, setup: func(r *rig, f *setFaults) {
			f.pending = 2
			r.onCall = polls(r)
		}},
		{name: "members stay pending (blue-green)", s: Settings{Strategy: "blue-green"}, want: ErrNoProgress, setup: func(r *rig, f *setFaults) {
			f.pending = 2
			r.onCall = polls(r)
		}},
		{name: "scaling fails", s: rolling, want: errBoom, retries: DefaultAttempts - 1, setup: func(r *rig, f *setFaults) {
			f.set(opEnsureSet, faultdriver.Fault{Err: errBoom})
		}},
		{name: "scaling fails once", s: rolling, retries: 1, setup: func(r *rig, f *setFaults) {
			f.set(opEnsureSet, faultdriver.Fault{Err: errBoom})
			r.onCall = func(c faultdriver.Call) {
				if c.Op == opEnsureSet {
					f.set(opEnsureSet) // only the first EnsureSet fails
				}
			}
		}},
		{name: "scaling hangs", s: rolling, want: ErrDriverTimeout, retries: DefaultAttempts - 1, setup: func(r *rig, f *setFaults) {
			f.set(opEnsureSet, faultdriver.Fault{Hang: true})
			r.onCall = hangs(r, opEnsureSet)
		}},
		{name: "evict hangs", s: rolling, want: ErrDriverTimeout, retries: DefaultAttempts - 1, setup: func(r *rig, f *setFaults) {
			f.set(opEvict, faultdriver.Fault{Hang: true})
			r.onCall = hangs(r, opEvict)
		}},
		{name: "members fail", s: rolling, want: errBoom, retries: DefaultAttempts - 1, setup: func(r *rig, f *setFaults) {
			f.set(opMembers, faultdriver.Fault{Err: errBoom})
		}},
		{name: "members fail once", s: rolling, retries: 1, setup: func(r *rig, f *setFaults) {
			f.set(opMembers, faultdriver.Fault{Err: errBoom})
			r.onCall = func(c faultdriver.Call) {
				if c.Op == opMembers {
					f.set(opMembers)
				}
			}
		}},
		{name: "list fails", s: rolling, want: errBoom, retries: DefaultAttempts - 1, setup: func(r *rig, f *setFaults) {
			r.inj.Set(faultdriver.OpList, faultdriver.Fault{Err: errBoom})
		}},
		{name: "list fails once", s: rolling, retries: 1, setup: func(r *rig, f *setFaults) {
			r.inj.Set(faultdriver.OpList, faultdriver.Fault{Err: errBoom})
			r.onCall = func(c faultdriver.Call) {
				if c.Op == faultdriver.OpList {
					r.inj.Set(faultdriver.OpList)
				}
			}
		}},
		{name: "events missed", s: Settings{Strategy: "rolling", MaxSurge: 1, ProgressDeadline: time.Hour}, setup: func(r *rig, f *setFaults) {
			// Every event dropped: new members not there at the first listing are found
			// by polling alone (without the poll the wait never ends). The long deadline
			// leaves the simulated runtime real time to start them.
			r.inj.Set(faultdriver.OpEvent, faultdriver.Fault{})
			r.onCall = polls(r)
		}},
		{name: "a third of the calls fail", s: rolling, retries: -1, setup: func(r *rig, f *setFaults) {
			// Seeded: the calls this picks fail once or twice, never three times running.
			f.set(opEnsureSet, faultdriver.Fault{P: 0.3, Err: errBoom})
			f.set(opEvict, faultdriver.Fault{P: 0.3, Err: errBoom})
			f.set(opMembers, faultdriver.Fault{P: 0.3, Err: errBoom})
		}, after: func(t *testing.T, r *rig) {
			if r.eventCount("retry") == 0 {
				t.Error("no call failed")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			r, f := newSetRig(t)
			const replicas = 3
			if err := r.exec.Run(ctx, r.door, target(1, replicas, tc.s)); err != nil {
				t.Fatalf("first rollout: %v", err)
			}
			r.arm()
			r.mu.Lock()
			tc.setup(r, f)
			r.mu.Unlock()
			err := r.exec.Run(ctx, r.door, target(2, replicas, tc.s))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("rollout to revision 2: %v, want %v", err, tc.want)
			}
			if n := r.eventCount("retry"); tc.retries >= 0 && n != tc.retries {
				t.Errorf("%d retries, want %d", n, tc.retries)
			}
			if tc.after != nil {
				tc.after(t, r)
			}
			most := replicas + 1
			if tc.s.Strategy == "blue-green" {
				most = 2 * replicas
			}
			if r.most > most || r.door.fewest < replicas {
				t.Errorf("at worst %d servers listed and %d in rotation; bounds %d and %d", r.most, r.door.fewest, most, replicas)
			}
			got, sizes := r.servers(), r.setSizes()
			if tc.want == nil {
				if got[2] != replicas || len(got) != 1 || sizes[2] != replicas || len(sizes) != 1 {
					t.Errorf("servers by revision (-1: out of rotation) = %v, sets %v; want %d of revision 2 in rotation, its set only", got, sizes, replicas)
				}
				return
			}
			timeout := tc.want == ErrDriverTimeout
			if got[1] < replicas && !timeout || got[2] > 1 || !timeout && got[2] > 0 || !timeout && sizes[2] > 0 || sizes[1] < replicas-1 {
				t.Errorf("after the failure, servers by revision (-1: out of rotation) = %v, sets %v", got, sizes)
			}
			// The caller rolls back: Run to the old target, faults gone.
			r.mu.Lock()
			r.unhealthy, r.onCall = nil, nil
			r.mu.Unlock()
			f.mu.Lock()
			f.faults, f.pending = map[faultdriver.Op]faultdriver.Fault{}, 0
			f.mu.Unlock()
			r.inj.Set(faultdriver.OpList)
			if err := r.exec.Run(ctx, r.door, target(1, replicas, tc.s)); err != nil {
				t.Fatalf("rolling back: %v", err)
			}
			if got, sizes := r.servers(), r.setSizes(); got[1] != replicas || len(got) != 1 || r.door.count() != replicas || sizes[1] != replicas || len(sizes) != 1 {
				t.Errorf("after the rollback, servers by revision (-1: out of rotation) = %v, %d in rotation, sets %v", got, r.door.count(), sizes)
			}
		})
	}
}

// keep_old holds the old set for its time on the executor's clock before evicting it
// and deleting its set.
func TestSetBlueGreenKeepOld(t *testing.T) {
	ctx := t.Context()
	r, _ := newSetRig(t)
	s := Settings{Strategy: "blue-green", KeepOld: time.Hour}
	if err := r.exec.Run(ctx, r.door, target(1, 2, s)); err != nil {
		t.Fatal(err)
	}
	switched := r.eventCount("switched")
	done := make(chan error, 1)
	go func() { done <- r.exec.Run(ctx, r.door, target(2, 2, s)) }()
	for r.eventCount("switched") == switched || !r.clock.HasWaiters() {
		select {
		case err := <-done:
			t.Fatalf("Run returned before keep_old: %v", err)
		default:
		}
		time.Sleep(time.Millisecond) // polling a condition, not waiting for time
	}
	if got, sizes := r.servers(), r.setSizes(); got[1] != 2 || got[2] != 2 || got[-1] != 2 || sizes[1] != 2 || sizes[2] != 2 {
		t.Errorf("during keep_old, servers by revision (-1: out of rotation) = %v, sets %v; want 2 old out of rotation and 2 new", got, sizes)
	}
	r.clock.Step(time.Hour)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, sizes := r.servers(), r.setSizes(); got[2] != 2 || len(got) != 1 || len(sizes) != 1 {
		t.Errorf("after keep_old, servers by revision = %v, sets %v", got, sizes)
	}
}

// started makes the set of spec's revision size n on the simulated runtime and returns
// once n of its members have started.
func started(t *testing.T, r *rig, spec driver.ServerSpec, n int) {
	ctx := t.Context()
	events, err := r.sim.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.sim.EnsureSet(ctx, spec, n); err != nil {
		t.Fatal(err)
	}
	for {
		members, err := r.sim.Members(ctx, driver.SetOf(spec))
		if err != nil {
			t.Fatal(err)
		}
		if len(members) >= n {
			return
		}
		<-events
	}
}

// A rollout stopped half-way left the new set with a member beside all the old servers:
// running it again counts that member against max_surge and admits it.
func TestSetResumedRolloutKeepsSurge(t *testing.T) {
	ctx := t.Context()
	r, _ := newSetRig(t)
	s := Settings{Strategy: "rolling", MaxSurge: 1}
	if err := r.exec.Run(ctx, r.door, target(1, 3, s)); err != nil {
		t.Fatal(err)
	}
	left := target(2, 3, s).Spec
	left.Revision = 2
	started(t, r, left, 1)
	r.arm()
	if err := r.exec.Run(ctx, r.door, target(2, 3, s)); err != nil {
		t.Fatal(err)
	}
	if got, sizes := r.servers(), r.setSizes(); got[2] != 3 || len(got) != 1 || sizes[2] != 3 || len(sizes) != 1 {
		t.Errorf("servers by revision (-1: out of rotation) = %v, sets %v", got, sizes)
	}
	if r.most > 4 || r.door.fewest < 3 {
		t.Errorf("at worst %d servers listed and %d in rotation; bounds 4 and 3", r.most, r.door.fewest)
	}
}

// Replace on sets grows the set by one, admits the new member, then evicts the old one:
// the set is back at its size, the old server gone, and capacity never dropped.
func TestSetReplace(t *testing.T) {
	ctx := t.Context()
	r, f := newSetRig(t)
	tg := target(1, 3, Settings{Strategy: "rolling", MaxSurge: 1})
	if err := r.exec.Run(ctx, r.door, tg); err != nil {
		t.Fatal(err)
	}
	members, err := r.sim.Members(ctx, driver.SetRef{Project: "p", Service: "web", Revision: 1})
	if err != nil || len(members) != 3 {
		t.Fatalf("members: %v, %v", members, err)
	}
	r.arm()
	if err := r.exec.Replace(ctx, r.door, tg, members[0], "drift: a file changed"); err != nil {
		t.Fatal(err)
	}
	if got, sizes := r.servers(), r.setSizes(); got[1] != 3 || len(got) != 1 || sizes[1] != 3 || r.door.Has(members[0].Address) {
		t.Errorf("servers by revision (-1: out of rotation) = %v, sets %v, old one in rotation: %v", got, sizes, r.door.Has(members[0].Address))
	}
	if r.inSets() != 3 || f.callsOf(faultdriver.OpCreate) != 0 {
		t.Errorf("%d servers in sets, %d made by Create; want 3 and none", r.inSets(), f.callsOf(faultdriver.OpCreate))
	}
	if r.most > 4 || r.door.fewest < 3 {
		t.Errorf("at worst %d servers listed and %d in rotation; bounds 4 and 3", r.most, r.door.fewest)
	}
	r.mu.Lock()
	last := r.events[len(r.events)-1]
	r.mu.Unlock()
	if !strings.HasPrefix(last, "destroyed: server "+members[0].Name) || !strings.HasSuffix(last, "drift: a file changed") {
		t.Errorf("last event %q, want the old server destroyed for its reason", last)
	}
}

// A member destroyed out of band is replaced by the runtime: Run waits for the
// replacement and admits it, growing nothing.
func TestSetHealMissing(t *testing.T) {
	ctx := t.Context()
	r, f := newSetRig(t)
	tg := target(1, 3, Settings{Strategy: "rolling", MaxSurge: 1})
	if err := r.exec.Run(ctx, r.door, tg); err != nil {
		t.Fatal(err)
	}
	members, err := r.sim.Members(ctx, driver.SetRef{Project: "p", Service: "web", Revision: 1})
	if err != nil || len(members) != 3 {
		t.Fatalf("members: %v, %v", members, err)
	}
	if err := r.sim.Destroy(ctx, members[1].ID); err != nil {
		t.Fatal(err)
	}
	r.door.Update(ctx, nil, []string{members[1].Address}) // as the engine does on its death
	if err := r.exec.Run(ctx, r.door, tg); err != nil {
		t.Fatal(err)
	}
	if got, sizes := r.servers(), r.setSizes(); got[1] != 3 || len(got) != 1 || sizes[1] != 3 || r.door.count() != 3 {
		t.Errorf("servers by revision (-1: out of rotation) = %v, sets %v, %d in rotation", got, sizes, r.door.count())
	}
	if n := f.callsOf(faultdriver.OpCreate, faultdriver.OpDestroy, opEvict); n != 0 {
		t.Errorf("%d servers created, destroyed or evicted by the executor; want none", n)
	}
}

// A driver that has the set methods but does not claim sets is run one by one, as is
// one that does when the executor is told OneByOne.
func TestSetsNeedTheClaim(t *testing.T) {
	for _, oneByOne := range []bool{false, true} {
		t.Run(fmt.Sprintf("one by one %v", oneByOne), func(t *testing.T) {
			ctx := t.Context()
			r, f := newSetRig(t)
			f.sets = oneByOne // claimed only when the executor is told not to use it
			r.exec.OneByOne = oneByOne
			s := Settings{Strategy: "rolling", MaxSurge: 1}
			for rev := int64(1); rev <= 2; rev++ {
				if err := r.exec.Run(ctx, r.door, target(rev, 2, s)); err != nil {
					t.Fatal(err)
				}
			}
			if n := f.callsOf(opEnsureSet, opEvict, opMembers, opSets, opDeleteSet); n != 0 || len(r.setSizes()) != 0 || r.servers()[2] != 2 {
				t.Errorf("%d set calls, sets %v, servers %v; want none, none, 2 of revision 2", n, r.setSizes(), r.servers())
			}
		})
	}
}

// A revision of the same spec (new settings or replicas only) keeps the set of the
// revision before: scaling up and down replaces no server and makes no set, as one by
// one keeps the servers. TargetSet reports that set for the new revision.
func TestSetKeptAcrossRevisionsOfOneSpec(t *testing.T) {
	ctx := t.Context()
	r, f := newSetRig(t)
	s := Settings{Strategy: "rolling", MaxSurge: 1}
	if err := r.exec.Run(ctx, r.door, target(1, 3, s)); err != nil {
		t.Fatal(err)
	}
	ids := func() []driver.ServerID {
		servers, err := r.sim.List(ctx, driver.Selector{Project: "p", Service: "web"})
		if err != nil {
			t.Fatal(err)
		}
		var out []driver.ServerID
		for _, s := range servers {
			out = append(out, s.ID)
		}
		return out
	}
	first := ids()
	for i, replicas := range []int{5, 2} {
		tg := target(1, replicas, s) // revision 1's spec
		tg.Revision = int64(2 + i)
		if err := r.exec.Run(ctx, r.door, tg); err != nil {
			t.Fatalf("revision %d: %v", tg.Revision, err)
		}
		got, sizes := ids(), r.setSizes()
		if len(got) != replicas || r.door.count() != replicas || len(sizes) != 1 || sizes[1] != replicas {
			t.Errorf("revision %d: %d servers, %d in rotation, sets %v; want %d, in revision 1's set", tg.Revision, len(got), r.door.count(), sizes, replicas)
		}
		kept := 0
		for _, id := range first {
			if slices.Contains(got, id) {
				kept++
			}
		}
		if want := min(3, replicas); kept != want {
			t.Errorf("revision %d kept %d of revision 1's servers, want %d", tg.Revision, kept, want)
		}
		ts, err := r.exec.TargetSet(ctx, tg)
		if err != nil || ts.Ref.Revision != 1 || !ts.Exists || ts.Replicas != replicas || len(ts.Members) != replicas {
			t.Errorf("TargetSet of revision %d: %+v (exists %v) of %d with %d members, %v; want revision 1's set of %d", tg.Revision, ts.Ref, ts.Exists, ts.Replicas, len(ts.Members), err, replicas)
		}
	}
	if f.callsOf(faultdriver.OpCreate, faultdriver.OpDestroy) != 0 {
		t.Errorf("%d servers created or destroyed by the executor, want none", f.callsOf(faultdriver.OpCreate, faultdriver.OpDestroy))
	}
}

// Replace of a member that is already gone (destroyed while the caller flagged it)
// grows nothing: its set replaces it, and the replacement is admitted, so the set never
// holds more than its size.
func TestSetReplaceOfAMemberGone(t *testing.T) {
	ctx := t.Context()
	r, f := newSetRig(t)
	tg := target(1, 3, Settings{Strategy: "rolling", MaxSurge: 1})
	if err := r.exec.Run(ctx, r.door, tg); err != nil {
		t.Fatal(err)
	}
	members, err := r.sim.Members(ctx, driver.SetRef{Project: "p", Service: "web", Revision: 1})
	if err != nil || len(members) != 3 {
		t.Fatalf("members: %v, %v", members, err)
	}
	if err := r.sim.Destroy(ctx, members[0].ID); err != nil { // out of band
		t.Fatal(err)
	}
	r.door.Update(ctx, nil, []string{members[0].Address})
	r.arm()
	if err := r.exec.Replace(ctx, r.door, tg, members[0], "it exited"); err != nil {
		t.Fatal(err)
	}
	if got, sizes := r.servers(), r.setSizes(); got[1] != 3 || len(got) != 1 || sizes[1] != 3 || r.door.count() != 3 {
		t.Errorf("servers by revision (-1: out of rotation) = %v, sets %v, %d in rotation", got, sizes, r.door.count())
	}
	if r.most > 3 || f.callsOf(opEvict) != 0 {
		t.Errorf("at worst %d servers listed, %d evicted; want 3 and none: the set replaced its member, kiln nothing", r.most, f.callsOf(opEvict))
	}
}

// Admitted is what the executor put in rotation and has not removed: after a rollout,
// the new revision's servers only; Forget drops one.
func TestAdmitted(t *testing.T) {
	for _, sets := range []bool{false, true} {
		t.Run(fmt.Sprintf("sets %v", sets), func(t *testing.T) {
			ctx := t.Context()
			var r *rig
			if sets {
				r, _ = newSetRig(t)
			} else {
				r = newRig(t)
			}
			s := Settings{Strategy: "rolling", MaxSurge: 1}
			for rev := int64(1); rev <= 2; rev++ {
				if err := r.exec.Run(ctx, r.door, target(rev, 2, s)); err != nil {
					t.Fatal(err)
				}
			}
			servers, err := r.sim.List(ctx, driver.Selector{Project: "p", Service: "web"})
			if err != nil {
				t.Fatal(err)
			}
			got := r.exec.Admitted("web")
			if len(got) != 2 || len(r.exec.Admitted("other")) != 0 {
				t.Fatalf("admitted %v, want the 2 servers of revision 2", got)
			}
			for i, s := range got {
				if s.ID != servers[i].ID || s.Revision != 2 || s.Address != servers[i].Address || len(s.Spec.Env) != 0 {
					t.Errorf("admitted %+v, want %+v (no env values)", s, servers[i])
				}
			}
			r.exec.Forget(got[0].ID)
			if after := r.exec.Admitted("web"); len(after) != 1 || after[0].ID != got[1].ID || r.exec.Address(got[0].ID) != "" {
				t.Errorf("after Forget, admitted %v and %q; want only %s", after, r.exec.Address(got[0].ID), got[1].ID)
			}
		})
	}
}

// A server of the target kept out of rotation whose admission is cut short (the
// caller's context ends: a stop, a heal giving way to a rollout) is not at fault: it
// stays, and the next Run admits it. One by one and on sets.
func TestKeptServerStaysWhenItsAdmissionIsCutShort(t *testing.T) {
	for _, sets := range []bool{false, true} {
		t.Run(fmt.Sprintf("sets %v", sets), func(t *testing.T) {
			var r *rig
			if sets {
				r, _ = newSetRig(t)
			} else {
				r = newRig(t)
			}
			tg := target(1, 2, Settings{Strategy: "rolling", MaxSurge: 1})
			if err := r.exec.Run(t.Context(), r.door, tg); err != nil {
				t.Fatal(err)
			}
			before := r.servers()
			for _, s := range r.exec.Admitted("web") { // as after a restart: none in rotation
				r.door.Update(t.Context(), nil, []string{s.Address})
			}
			ctx, cancel := context.WithCancel(t.Context())
			r.mu.Lock()
			r.unhealthy = map[int64]func(context.Context) error{1: func(gctx context.Context) error {
				cancel() // the caller gives up while the gate runs
				<-gctx.Done()
				return gctx.Err()
			}}
			r.mu.Unlock()
			if err := r.exec.Run(ctx, r.door, tg); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run cut short: %v, want context.Canceled", err)
			}
			if got := r.servers(); got[1] != 2 || r.eventCount("destroyed") != 0 {
				t.Errorf("servers by revision (-1: out of rotation) = %v (were %v), %d destroyed; want both kept", got, before, r.eventCount("destroyed"))
			}
			r.mu.Lock()
			r.unhealthy = nil
			r.mu.Unlock()
			if err := r.exec.Run(t.Context(), r.door, tg); err != nil {
				t.Fatal(err)
			}
			if got := r.servers(); got[1] != 2 || len(got) != 1 || r.eventCount("created") != 2 {
				t.Errorf("servers by revision (-1: out of rotation) = %v, %d created; want the 2 first ones, in rotation", got, r.eventCount("created"))
			}
		})
	}
}
