package faultdriver

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
)

// fullDriver is a fake with every optional interface, to check that the wrapper passes
// each one on; its Watch sends the events of its channel.
type fullDriver struct {
	*simdriver.Driver
	events chan driver.Event
}

func (f fullDriver) Wait(ctx context.Context, id driver.ServerID) (driver.Exit, error) {
	<-ctx.Done()
	return driver.Exit{}, ctx.Err()
}
func (f fullDriver) Watch(ctx context.Context) (<-chan driver.Event, error) { return f.events, nil }
func (f fullDriver) Diff(ctx context.Context, s driver.Server) ([]driver.Drift, error) {
	return []driver.Drift{}, nil
}
func (f fullDriver) EnsureImage(ctx context.Context, digest string, open func() (v1.Image, error)) error {
	return nil
}

func interfaces(d driver.Driver) [5]bool {
	_, l := d.(driver.Logger)
	_, w := d.(driver.Waiter)
	_, wa := d.(driver.Watcher)
	_, df := d.(driver.Differ)
	_, il := d.(driver.ImageLoader)
	return [5]bool{l, w, wa, df, il}
}

// The wrapper has exactly the optional interfaces of the driver it wraps.
func TestOptionalInterfacesPassThrough(t *testing.T) {
	sim := simdriver.New()
	defer sim.Close()
	if got, want := interfaces(New(sim, 1).Driver()), interfaces(sim); got != want {
		t.Errorf("wrapping simdriver: interfaces %v, want %v", got, want)
	}
	full := fullDriver{Driver: sim}
	if got, want := interfaces(New(full, 1).Driver()), [5]bool{true, true, true, true, true}; got != want {
		t.Errorf("wrapping a driver with every interface: %v, want %v", got, want)
	}
	if n := New(sim, 1).Driver().Name(); n != sim.Name() {
		t.Errorf("Name = %q, want %q", n, sim.Name())
	}
}

var errBoom = errors.New("boom")

// loadImage gives the simulated runtime an (empty) image and returns its digest.
func loadImage(t *testing.T, sim *simdriver.Driver) string {
	h, err := empty.Image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.EnsureImage(t.Context(), h.String(), func() (v1.Image, error) { return empty.Image, nil }); err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// A fault fails, hangs or delays the calls of its kind only.
func TestFaults(t *testing.T) {
	ctx := t.Context()
	sim := simdriver.New()
	defer sim.Close()
	inj := New(sim, 1)
	d := inj.Driver()
	spec := driver.ServerSpec{Service: "web", Revision: 1, Port: 8080, Image: loadImage(t, sim)}

	inj.Set(OpCreate, Fault{Err: errBoom})
	if _, err := d.Create(ctx, spec); !errors.Is(err, errBoom) {
		t.Fatalf("Create with a fail fault: %v, want %v", err, errBoom)
	}
	if l, _ := sim.List(ctx, driver.Selector{}); len(l) != 0 {
		t.Fatalf("a failed Create reached the driver: %d servers", len(l))
	}
	if _, err := d.List(ctx, driver.Selector{}); err != nil {
		t.Fatalf("List has no fault: %v", err)
	}

	inj.Set(OpCreate, Fault{Hang: true})
	hctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := d.Create(hctx, spec)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create with a hang fault: %v, want the context's deadline", err)
	}

	inj.Set(OpCreate, Fault{Delay: time.Millisecond})
	s, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create with a delay fault: %v", err)
	}
	inj.Set(OpDestroy, Fault{Delay: time.Hour})
	dctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Destroy(dctx, s.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("Destroy delayed past its context: %v, want context.Canceled", err)
	}
	inj.Set(OpDestroy, Fault{})
	if err := d.Destroy(ctx, s.ID); !errors.Is(err, ErrInjected) {
		t.Fatalf("Destroy with an empty fault: %v, want ErrInjected", err)
	}
	inj.Set(OpDestroy)
	if err := d.Destroy(ctx, s.ID); err != nil {
		t.Fatalf("Destroy with its faults cleared: %v", err)
	}
	if got := [3]int{inj.Injected(OpCreate), inj.Injected(OpDestroy), inj.Injected(OpList)}; got != [3]int{3, 2, 0} {
		t.Errorf("Injected (create, destroy, list) = %v, want [3 2 0]", got)
	}
}

// Probabilistic faults apply about as often as asked, and the same seed picks the same
// calls.
func TestProbabilityIsSeeded(t *testing.T) {
	ctx := t.Context()
	sim := simdriver.New()
	defer sim.Close()
	run := func(seed uint64) []bool {
		inj := New(sim, seed)
		inj.Set(OpList, Fault{P: 0.1, Err: errBoom}, Fault{P: 0.2})
		var failed []bool
		for range 1000 {
			_, err := inj.Driver().List(ctx, driver.Selector{})
			failed = append(failed, err != nil)
		}
		if n := inj.Injected(OpList); n < 230 || n > 370 {
			t.Errorf("seed %d: %d of 1000 calls failed with P = 0.3", seed, n)
		}
		return failed
	}
	a, b, c := run(7), run(7), run(8)
	same := func(x, y []bool) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("the same seed failed different calls")
	}
	if same(a, c) {
		t.Error("two seeds failed the same 1000 calls")
	}
}

// The hook sees every call with its number, and can stop the K-th one: it fails with
// the hook's error and never reaches the driver.
func TestCrashAtCall(t *testing.T) {
	sim := simdriver.New()
	defer sim.Close()
	inj := New(sim, 1)
	d := inj.Driver()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errCrash := errors.New("crashed")
	var seen []Call
	inj.OnCall(func(_ context.Context, c Call) error {
		seen = append(seen, c)
		if c.Seq == 3 {
			cancel()
			return errCrash
		}
		return nil
	})
	spec := driver.ServerSpec{Service: "web", Revision: 1, Port: 8080, Image: loadImage(t, sim)}
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(ctx, driver.Selector{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create(ctx, spec); !errors.Is(err, errCrash) {
		t.Fatalf("call 3: %v, want the hook's error", err)
	}
	if ctx.Err() == nil {
		t.Error("the hook did not cancel the caller's context")
	}
	if l, _ := sim.List(t.Context(), driver.Selector{}); len(l) != 1 {
		t.Errorf("%d servers, want 1: the crashed Create reached the driver", len(l))
	}
	want := []Call{{1, OpCreate}, {2, OpList}, {3, OpCreate}}
	if len(seen) != len(want) || inj.Calls() != 3 {
		t.Fatalf("hook saw %v (Calls %d), want %v", seen, inj.Calls(), want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("call %d = %v, want %v", i+1, seen[i], want[i])
		}
	}
}

// An OpEvent fault drops the events it applies to; the others arrive in order.
func TestEventsMissed(t *testing.T) {
	sim := simdriver.New()
	defer sim.Close()
	full := fullDriver{Driver: sim, events: make(chan driver.Event)}
	inj := New(full, 3)
	inj.Set(OpEvent, Fault{P: 0.5})
	w := inj.Driver().(driver.Watcher)
	events, err := w.Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range 200 {
			full.events <- driver.Event{Type: driver.EventDie, Detail: string(rune('a' + i%26))}
		}
		close(full.events)
	}()
	got := 0
	for range events {
		got++
	}
	if dropped := inj.Injected(OpEvent); got+dropped != 200 || dropped < 60 || dropped > 140 {
		t.Errorf("%d events arrived and %d were dropped, of 200 with P = 0.5", got, dropped)
	}
	// A Watch fault fails the call itself.
	inj.Set(OpWatch, Fault{Err: errBoom})
	if _, err := w.Watch(t.Context()); !errors.Is(err, errBoom) {
		t.Errorf("Watch with a fail fault: %v", err)
	}
	// The optional calls go through the injector too.
	inj.Set(OpLogs, Fault{Err: errBoom})
	if _, err := inj.Driver().(driver.Logger).Logs(t.Context(), "x", false); !errors.Is(err, errBoom) {
		t.Errorf("Logs with a fail fault: %v", err)
	}
}
