package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// orderDriver is the simulated driver with a Close that checks the stop order: by the
// time the daemon closes the driver, the API listener is closed, the engine has
// returned (no driver call comes after Close) and the state store is still open.
// With hold, Create (EnsureSet, with sets) waits for its context to end and then
// creates the server (sizes the set): a rollout's step is in flight until the daemon
// stops, and is undone as it stops. Without sets it does not claim the simulated
// runtime's sets, and kiln runs it one by one.
type orderDriver struct {
	*simdriver.Driver
	t       *testing.T
	d       *Daemon
	hold    bool
	sets    bool
	created chan struct{} // a Create (EnsureSet) started

	mu       sync.Mutex
	closed   bool
	inflight int            // calls not yet returned
	late     []string       // calls after Close, or in flight at Close
	calls    map[string]int // every call, by name
}

func newOrderDriver(t *testing.T, hold, sets bool) *orderDriver {
	return &orderDriver{Driver: simdriver.New(), t: t, hold: hold, sets: sets, created: make(chan struct{}, 16)}
}

func (o *orderDriver) Capabilities() driver.Capabilities {
	c := o.Driver.Capabilities()
	c.Sets = o.sets
	return c
}

// called notes a call to the driver; the function it returns, that it returned.
func (o *orderDriver) called(what string) (returned func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		o.late = append(o.late, what)
	}
	if o.calls == nil {
		o.calls = map[string]int{}
	}
	o.calls[what]++
	o.inflight++
	return func() {
		o.mu.Lock()
		o.inflight--
		o.mu.Unlock()
	}
}

func (o *orderDriver) Create(ctx context.Context, spec driver.ServerSpec) (driver.Server, error) {
	defer o.called("create")()
	o.created <- struct{}{}
	if o.hold {
		<-ctx.Done()
		return o.Driver.Create(context.WithoutCancel(ctx), spec)
	}
	return o.Driver.Create(ctx, spec)
}

func (o *orderDriver) Destroy(ctx context.Context, id driver.ServerID) error {
	defer o.called("destroy")()
	return o.Driver.Destroy(ctx, id)
}

func (o *orderDriver) EnsureSet(ctx context.Context, spec driver.ServerSpec, replicas int) error {
	defer o.called("ensure_set")()
	if o.hold {
		o.created <- struct{}{}
		<-ctx.Done()
		return o.Driver.EnsureSet(context.WithoutCancel(ctx), spec, replicas)
	}
	return o.Driver.EnsureSet(ctx, spec, replicas)
}

func (o *orderDriver) Evict(ctx context.Context, id driver.ServerID) error {
	defer o.called("evict")()
	return o.Driver.Evict(ctx, id)
}

func (o *orderDriver) Members(ctx context.Context, ref driver.SetRef) ([]driver.Server, error) {
	defer o.called("members")()
	return o.Driver.Members(ctx, ref)
}

func (o *orderDriver) Sets(ctx context.Context, sel driver.Selector) ([]driver.Set, error) {
	defer o.called("sets")()
	return o.Driver.Sets(ctx, sel)
}

func (o *orderDriver) DeleteSet(ctx context.Context, ref driver.SetRef) error {
	defer o.called("delete_set")()
	return o.Driver.DeleteSet(ctx, ref)
}

func (o *orderDriver) List(ctx context.Context, sel driver.Selector) ([]driver.Server, error) {
	defer o.called("list")()
	return o.Driver.List(ctx, sel)
}

func (o *orderDriver) Close() error {
	select {
	case <-o.d.ln.closed:
	default:
		o.t.Error("the driver was closed while the API listener was open")
	}
	if _, err := o.d.state.Services(context.Background()); err != nil {
		o.t.Errorf("the state store was closed before the driver: %v", err)
	}
	o.mu.Lock()
	o.closed = true
	if o.inflight > 0 {
		o.late = append(o.late, fmt.Sprintf("%d in flight at Close", o.inflight))
	}
	o.mu.Unlock()
	return nil
}

// project is a state directory with one image baked into its store, and the service
// that runs it.
func project(t *testing.T) (dir string, svc api.Service) {
	t.Helper()
	dir = t.TempDir()
	images, err := imagestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := spec.Parse("kiln.hcl", []byte(`image "tiny" {
  from = "scratch"
  file "/hello.txt" { content = "hello\n" }
}`), spec.Options{Environ: []string{}, Dir: dir})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ctx := context.Background()
	unlock, err := images.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bake.NewBaker(images, bake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Bake(ctx, cfg.Images)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	svc = api.Service{Name: "web", Image: res[0].Digest.String(), ImageName: "tiny", Replicas: 2, Port: 8080, Listen: "127.0.0.1:0",
		Resources: api.Resources{MemoryBytes: 64 << 20, PIDs: 64},
		Health:    api.Health{HTTP: "/", Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3},
		Update:    api.Update{Strategy: "rolling", MaxSurge: 1, ProgressDeadline: time.Minute, AutoRollback: true}}
	return dir, svc
}

func newDaemon(t *testing.T, dir string, drv *orderDriver) *Daemon {
	t.Helper()
	d, err := New(context.Background(), Options{StateDir: dir, Listen: "127.0.0.1:0", Driver: drv})
	if err != nil {
		t.Fatal(err)
	}
	drv.d = d
	return d
}

// start runs d.Start until the returned stop is called; stop returns Start's error.
func start(d *Daemon) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Start(ctx) }()
	return func() error { cancel(); return <-done }
}

// wait returns when the engine reports an event of typ for service, or fails the test
// after a minute.
func waitEvent(t *testing.T, events <-chan api.Event, service, typ string) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case e := <-events:
			if e.Service == service && e.Type == typ {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", typ, service)
		}
	}
}

// TestStopOrder: a daemon stopped with a rollout's step in flight closes the API
// listener, then stops the engine, then closes the driver, then the store, and removes
// its files; the rollout stays running in the store, and the next daemon resumes it to
// the target's servers. One by one and on a runtime of sets.
func TestStopOrder(t *testing.T) {
	for _, sets := range []bool{false, true} {
		t.Run(fmt.Sprintf("sets %v", sets), func(t *testing.T) { testStopOrder(t, sets) })
	}
}

func testStopOrder(t *testing.T, sets bool) {
	dir, svc := project(t)
	drv := newOrderDriver(t, true, sets)
	d := newDaemon(t, dir, drv)
	if pid, _, err := Running(dir); pid != os.Getpid() || err != nil {
		t.Fatalf("after New, Running says %d %v; want this process", pid, err)
	}
	// Clients find it from New on: the verbs print its address once New returns.
	if b, err := os.ReadFile(filepath.Join(dir, api.AddrFile)); err != nil || string(b) != d.Addr()+"\n" {
		t.Errorf("after New, api.addr holds %q (%v), want %s", b, err, d.Addr())
	}
	stop := start(d)
	type answer struct {
		res api.Result
		err error
	}
	applied := make(chan answer, 1)
	go func() {
		res, err := api.New(d.Addr(), d.Token()).Apply(context.Background(), api.ApplyRequest{Services: []api.Service{svc}, User: "test"}, nil)
		applied <- answer{res, err}
	}()
	<-drv.created // the first step is in flight
	if err := stop(); err != nil {
		t.Fatalf("Start returned %v after its context ended, want nil", err)
	}
	// The request in flight was answered before the daemon went: the rollout is pending.
	a := <-applied
	if a.err != nil || len(a.res.Services) != 1 || a.res.Services[0].Outcome != string(store.OutcomePending) {
		t.Errorf("the apply in flight got %+v %v, want its rollout pending", a.res, a.err)
	}
	if len(drv.late) > 0 {
		t.Errorf("driver calls after the driver was closed (the engine had not returned): %v", drv.late)
	}
	if step := map[bool]string{false: "create", true: "ensure_set"}; drv.calls[step[sets]] == 0 || drv.calls[step[!sets]] != 0 {
		t.Errorf("driver calls %v: the step in flight was not a %s", drv.calls, step[sets])
	}
	// The step cut short was undone: its server is gone.
	if servers, _ := drv.Driver.List(context.Background(), driver.Selector{}); len(servers) != 0 {
		t.Errorf("%d servers of the interrupted step outlive the stop", len(servers))
	}
	if _, err := d.state.Services(context.Background()); err == nil {
		t.Error("the state store is still open after Start returned")
	}
	for _, f := range []string{PIDFile, api.AddrFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s outlives the daemon: %v", f, err)
		}
	}
	if _, err := net.Dial("tcp", d.Addr()[len("http://"):]); err == nil {
		t.Error("the API still accepts connections")
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	running, err := st.RunningRollouts(context.Background())
	if err != nil || len(running) != 1 || running[0].Service != svc.Name || running[0].To != 1 {
		st.Close()
		t.Fatalf("running rollouts after the stop: %+v %v; want web's to revision 1", running, err)
	}
	// The interruption is recorded, as a step of the rollout.
	evs, err := st.QueryEvents(context.Background(), store.EventQuery{Type: api.EventInterrupted, RolloutID: running[0].ID, Limit: 10})
	st.Close()
	if err != nil || len(evs) != 1 {
		t.Errorf("interrupted events of the rollout: %+v %v; want one", evs, err)
	}

	// The next daemon resumes the rollout and converges.
	drv2 := newOrderDriver(t, false, sets)
	d2 := newDaemon(t, dir, drv2)
	events, cancel := d2.eng.Subscribe()
	defer cancel()
	stop = start(d2)
	waitEvent(t, events, svc.Name, "resumed")
	waitEvent(t, events, svc.Name, "deployed")
	servers, err := drv2.Driver.List(context.Background(), driver.Selector{Service: svc.Name})
	if err != nil || len(servers) != svc.Replicas {
		t.Errorf("after the resumed rollout: %d servers (%v), want %d", len(servers), err, svc.Replicas)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	drv2.Driver.Close()
}

// TestPartFailureStopsAll: when the API server fails, Start stops the engine and
// returns the API's error, releasing everything.
func TestPartFailureStopsAll(t *testing.T) {
	dir, _ := project(t)
	drv := newOrderDriver(t, false, true)
	d := newDaemon(t, dir, drv)
	done := make(chan error, 1)
	go func() { done <- d.Start(context.Background()) }()
	d.ln.Listener.Close() // a fault: the listener fails under the API server
	err := <-done
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Start returned %v, want the API server's accept error", err)
	}
	if len(drv.late) > 0 {
		t.Errorf("driver calls after the driver was closed: %v", drv.late)
	}
	if pid, _, err := Running(dir); pid != 0 || err != nil {
		t.Errorf("after a failed Start, Running says %d %v; want none", pid, err)
	}
}

// TestSecondDaemonRefused: New refuses a state directory a daemon holds, naming its
// address and PID; a daemon closed without being started releases it, and cannot be
// started.
func TestSecondDaemonRefused(t *testing.T) {
	dir, _ := project(t)
	drv := newOrderDriver(t, false, true)
	d := newDaemon(t, dir, drv)
	stop := start(d)
	if _, err := api.New(d.Addr(), d.Token()).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), Options{StateDir: dir, Listen: "127.0.0.1:0", Driver: newOrderDriver(t, false, true)})
	want := fmt.Sprintf("a kiln daemon is already running for this spec at %s (PID %d): use it, or stop it with `kiln stop`", d.Addr(), os.Getpid())
	if !errors.Is(err, ErrRunning) || err.Error() != want {
		t.Errorf("second New: %v\nwant %s", err, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	d = newDaemon(t, dir, newOrderDriver(t, false, true))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if pid, _, _ := Running(dir); pid != 0 {
		t.Errorf("Close left the PID file held by %d", pid)
	}
	if err := d.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("Start after Close: %v, want ErrStarted", err)
	}
}
