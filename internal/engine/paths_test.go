package engine

import (
	"context"
	"io"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
)

// The engine's tests of rollouts and of the controller run on both of the executor's
// paths: one by one (the simulated runtime behind the fault injector, which does not
// forward sets: as the Docker driver, a runtime of single servers) and sets (the same,
// with the simulated runtime's sets given back: as the Kubernetes driver, a ReplicaSet
// per revision).

// onPaths runs f as a subtest on each path; sets says which.
func onPaths(t *testing.T, f func(t *testing.T, sets bool)) {
	for _, p := range []struct {
		name string
		sets bool
	}{{"one by one", false}, {"sets", true}} {
		t.Run(p.name, func(t *testing.T) { f(t, p.sets) })
	}
}

// runtime is the simulated runtime on a path: itself (it claims sets), or behind a
// fault injector that injects nothing and hides its sets.
func (d *simDaemon) runtime(sets bool) driver.Driver {
	if sets {
		return d.drv
	}
	return faultdriver.New(d.drv, 1).Driver()
}

// setRuntime is a fault injector's view of the simulated runtime with its sets: the
// core calls and the optional ones go through the injector (its faults, its hook), the
// set calls straight to the simulated runtime, noted. It claims what the view claims,
// and sets.
type setRuntime struct {
	driver.Driver // the injector's view
	sim           *simdriver.Driver

	mu     sync.Mutex
	calls  map[string]int        // set calls by name
	most   map[driver.SetRef]int // the largest size asked of each set
	evicts map[driver.ServerID]bool
}

var (
	_ driver.SetDriver   = (*setRuntime)(nil)
	_ driver.Watcher     = (*setRuntime)(nil)
	_ driver.Logger      = (*setRuntime)(nil)
	_ driver.Waiter      = (*setRuntime)(nil)
	_ driver.Differ      = (*setRuntime)(nil)
	_ driver.ImageLoader = (*setRuntime)(nil)
)

func newSetRuntime(view driver.Driver, sim *simdriver.Driver) *setRuntime {
	return &setRuntime{Driver: view, sim: sim, calls: map[string]int{}, most: map[driver.SetRef]int{},
		evicts: map[driver.ServerID]bool{}}
}

func (r *setRuntime) Capabilities() driver.Capabilities {
	c := driver.CapabilitiesOf(r.Driver)
	c.Sets = true
	return c
}

// The view's optional interfaces, passed on: the engine uses each only where the view
// claims it (ImageLoader, which it uses whenever the driver is one, the view has).
func (r *setRuntime) Watch(ctx context.Context) (<-chan driver.Event, error) {
	return r.Driver.(driver.Watcher).Watch(ctx)
}

func (r *setRuntime) Logs(ctx context.Context, id driver.ServerID, follow bool) (io.ReadCloser, error) {
	return r.Driver.(driver.Logger).Logs(ctx, id, follow)
}

func (r *setRuntime) Wait(ctx context.Context, id driver.ServerID) (driver.Exit, error) {
	return r.Driver.(driver.Waiter).Wait(ctx, id)
}

func (r *setRuntime) Diff(ctx context.Context, s driver.Server) ([]driver.Drift, error) {
	return r.Driver.(driver.Differ).Diff(ctx, s)
}

func (r *setRuntime) EnsureImage(ctx context.Context, digest string, open func() (v1.Image, error)) error {
	return r.Driver.(driver.ImageLoader).EnsureImage(ctx, digest, open)
}

func (r *setRuntime) note(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[call]++
}

func (r *setRuntime) EnsureSet(ctx context.Context, spec driver.ServerSpec, replicas int) error {
	r.mu.Lock()
	r.calls["ensure_set"]++
	ref := driver.SetOf(spec)
	r.most[ref] = max(r.most[ref], replicas)
	r.mu.Unlock()
	return r.sim.EnsureSet(ctx, spec, replicas)
}

func (r *setRuntime) Evict(ctx context.Context, id driver.ServerID) error {
	r.mu.Lock()
	r.calls["evict"]++
	r.evicts[id] = true
	r.mu.Unlock()
	return r.sim.Evict(ctx, id)
}

func (r *setRuntime) Members(ctx context.Context, ref driver.SetRef) ([]driver.Server, error) {
	r.note("members")
	return r.sim.Members(ctx, ref)
}

func (r *setRuntime) Sets(ctx context.Context, sel driver.Selector) ([]driver.Set, error) {
	r.note("sets")
	return r.sim.Sets(ctx, sel)
}

func (r *setRuntime) DeleteSet(ctx context.Context, ref driver.SetRef) error {
	r.note("delete_set")
	return r.sim.DeleteSet(ctx, ref)
}

// largest is the largest size kiln asked of any set of the service.
func (r *setRuntime) largest() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.most {
		n = max(n, m)
	}
	return n
}

func (r *setRuntime) evicted(id driver.ServerID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evicts[id]
}

// opCounter counts the calls through a fault injector, by kind.
type opCounter struct {
	mu sync.Mutex
	n  map[faultdriver.Op]int
}

// countOps makes inj count its calls in the returned counter.
func countOps(inj *faultdriver.Injector) *opCounter {
	c := &opCounter{n: map[faultdriver.Op]int{}}
	inj.OnCall(func(ctx context.Context, call faultdriver.Call) error {
		c.mu.Lock()
		c.n[call.Op]++
		c.mu.Unlock()
		return nil
	})
	return c
}

func (c *opCounter) of(op faultdriver.Op) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}
