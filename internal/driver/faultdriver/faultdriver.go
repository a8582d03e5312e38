package faultdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/driver"
)

// Op is a kind of driver call.
type Op string

// The calls a fault can be set on. OpEvent is not a call but each event a Watch
// delivers: a fault that applies to it drops the event ("events missed").
const (
	OpCreate      Op = "create"
	OpDestroy     Op = "destroy"
	OpStop        Op = "stop"
	OpList        Op = "list"
	OpLogs        Op = "logs"
	OpWait        Op = "wait"
	OpWatch       Op = "watch"
	OpDiff        Op = "diff"
	OpEnsureImage Op = "ensure_image"
	OpEvent       Op = "event"
)

// ErrInjected is the error of a fault that names none.
var ErrInjected = errors.New("injected fault")

// Fault is what happens to a call it applies to: first Delay, then Hang, then Err. A
// fault with only Delay lets the call through late; one with nothing set fails it with
// ErrInjected.
type Fault struct {
	// P is the probability, in (0, 1], that the fault applies to a call; 0 means 1.
	// The faults of one Op are exclusive: one draw per call picks at most one, so their
	// P should add up to at most 1.
	P float64
	// Err is the error the call fails with (wrapped, so errors.Is finds it).
	Err error
	// Hang blocks the call until its context ends, and fails it with the context's error.
	Hang bool
	// Delay holds the call this long (real time; less if its context ends first).
	Delay time.Duration
}

// Call is one call through the wrapper: its number (from 1, in the order calls
// arrive, across every Op; events are not counted) and kind.
type Call struct {
	Seq int64
	Op  Op
}

// Injector wraps a driver and injects the faults it is told to. It is safe for
// concurrent use; faults and the hook may be changed while calls are in flight.
type Injector struct {
	inner driver.Driver
	d     driver.Driver

	mu       sync.Mutex
	rnd      *rand.Rand
	faults   map[Op][]Fault
	hook     func(ctx context.Context, c Call) error
	seq      int64
	injected map[Op]int
}

// New wraps inner. seed makes the probabilistic faults repeatable.
func New(inner driver.Driver, seed uint64) *Injector {
	i := &Injector{inner: inner, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		faults: map[Op][]Fault{}, injected: map[Op]int{}}
	i.d = i.view()
	return i
}

// Driver is the wrapped driver: the wrapped driver's own optional interfaces (Logger,
// Waiter, Watcher, Differ, ImageLoader), and only those, with faults injected.
func (i *Injector) Driver() driver.Driver { return i.d }

// Set replaces the faults of op (none: calls pass through).
func (i *Injector) Set(op Op, faults ...Fault) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.faults[op] = faults
}

// OnCall sets a hook called at the start of every call, before any fault, with the
// call's number: "crash at call K". A non-nil error fails the call with it, without
// reaching the wrapped driver. The hook may cancel the caller's context. It is called
// from the caller's goroutine and must not call the wrapper (the wrapped driver is
// fine). nil removes it.
func (i *Injector) OnCall(h func(ctx context.Context, c Call) error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.hook = h
}

// Calls is how many calls have been made through the wrapper.
func (i *Injector) Calls() int64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.seq
}

// Injected is how many faults of op have applied.
func (i *Injector) Injected(op Op) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.injected[op]
}

// drawLocked picks the fault that applies to one occurrence of op, if any; i.mu is held.
func (i *Injector) drawLocked(op Op) (Fault, bool) {
	fs := i.faults[op]
	if len(fs) == 0 {
		return Fault{}, false
	}
	u, acc := i.rnd.Float64(), 0.0
	for _, f := range fs {
		p := f.P
		if p <= 0 {
			p = 1
		}
		if acc += p; u < acc {
			i.injected[op]++
			return f, true
		}
	}
	return Fault{}, false
}

// before runs the hook and the fault for one call of op; a non-nil error is the call's.
func (i *Injector) before(ctx context.Context, op Op) error {
	i.mu.Lock()
	i.seq++
	c := Call{Seq: i.seq, Op: op}
	h := i.hook
	f, ok := i.drawLocked(op)
	i.mu.Unlock()
	if h != nil {
		if err := h(ctx, c); err != nil {
			return err
		}
	}
	if !ok {
		return nil
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s (delayed by a fault): %w", op, ctx.Err())
		}
		if !f.Hang && f.Err == nil {
			return nil
		}
	}
	if f.Hang {
		<-ctx.Done()
		return fmt.Errorf("%s (hung by a fault): %w", op, ctx.Err())
	}
	err := f.Err
	if err == nil {
		err = ErrInjected
	}
	return fmt.Errorf("%s: %w", op, err)
}

// core is the driver.Driver part of every view.
type core struct{ i *Injector }

func (c core) Name() string { return c.i.inner.Name() }

// Capabilities are the wrapped driver's, but sets: the wrapper does not forward
// driver.SetDriver, so it does not claim it.
func (c core) Capabilities() driver.Capabilities {
	caps := driver.CapabilitiesOf(c.i.inner)
	caps.Sets = false
	return caps
}

func (c core) Create(ctx context.Context, spec driver.ServerSpec) (driver.Server, error) {
	if err := c.i.before(ctx, OpCreate); err != nil {
		return driver.Server{}, err
	}
	return c.i.inner.Create(ctx, spec)
}

func (c core) Destroy(ctx context.Context, id driver.ServerID) error {
	if err := c.i.before(ctx, OpDestroy); err != nil {
		return err
	}
	return c.i.inner.Destroy(ctx, id)
}

// Stop is on every view (driver.Stopper): a caller finds out from Capabilities.Stop,
// which is the wrapped driver's, whether it may be used.
func (c core) Stop(ctx context.Context, id driver.ServerID) error {
	sp, ok := c.i.inner.(driver.Stopper)
	if !ok {
		return fmt.Errorf("stopping %s: %s is not a driver.Stopper", id, c.i.inner.Name())
	}
	if err := c.i.before(ctx, OpStop); err != nil {
		return err
	}
	return sp.Stop(ctx, id)
}

func (c core) List(ctx context.Context, sel driver.Selector) ([]driver.Server, error) {
	if err := c.i.before(ctx, OpList); err != nil {
		return nil, err
	}
	return c.i.inner.List(ctx, sel)
}

type logger struct{ i *Injector }

func (l logger) Logs(ctx context.Context, id driver.ServerID, follow bool) (io.ReadCloser, error) {
	if err := l.i.before(ctx, OpLogs); err != nil {
		return nil, err
	}
	return l.i.inner.(driver.Logger).Logs(ctx, id, follow)
}

type waiter struct{ i *Injector }

func (w waiter) Wait(ctx context.Context, id driver.ServerID) (driver.Exit, error) {
	if err := w.i.before(ctx, OpWait); err != nil {
		return driver.Exit{}, err
	}
	return w.i.inner.(driver.Waiter).Wait(ctx, id)
}

type differ struct{ i *Injector }

func (d differ) Diff(ctx context.Context, s driver.Server) ([]driver.Drift, error) {
	if err := d.i.before(ctx, OpDiff); err != nil {
		return nil, err
	}
	return d.i.inner.(driver.Differ).Diff(ctx, s)
}

type loader struct{ i *Injector }

func (l loader) EnsureImage(ctx context.Context, digest string, open func() (v1.Image, error)) error {
	if err := l.i.before(ctx, OpEnsureImage); err != nil {
		return err
	}
	return l.i.inner.(driver.ImageLoader).EnsureImage(ctx, digest, open)
}

type watcher struct{ i *Injector }

// Watch passes on the wrapped driver's events, less those an OpEvent fault drops. The
// channel is closed when the wrapped one is, or when ctx ends.
func (w watcher) Watch(ctx context.Context) (<-chan driver.Event, error) {
	if err := w.i.before(ctx, OpWatch); err != nil {
		return nil, err
	}
	in, err := w.i.inner.(driver.Watcher).Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan driver.Event)
	go func() {
		defer close(out)
		for ev := range in {
			w.i.mu.Lock()
			_, drop := w.i.drawLocked(OpEvent)
			w.i.mu.Unlock()
			if drop {
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
