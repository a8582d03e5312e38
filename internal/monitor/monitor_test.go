package monitor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kiln-build/kiln/internal/health"
	"github.com/kiln-build/kiln/internal/spec"
)

// fakeProbe is a probe that blocks until released, so that a test decides when each
// probe answers; it counts probes in flight by address.
type fakeProbe struct {
	mu       sync.Mutex
	inFlight map[string]int
	worst    int
	started  chan string
	answers  chan error
}

func newFakeProbe() *fakeProbe {
	return &fakeProbe{inFlight: map[string]int{}, started: make(chan string, 100), answers: make(chan error)}
}

func (f *fakeProbe) probe(ctx context.Context, addr string, _ health.Check) error {
	f.mu.Lock()
	f.inFlight[addr]++
	f.worst = max(f.worst, f.inFlight[addr])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight[addr]--
		f.mu.Unlock()
	}()
	f.started <- addr
	select {
	case err := <-f.answers:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestOneProbeInFlightPerServer(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	fp := newFakeProbe()
	type failure struct {
		addr string
		n    int
	}
	failures := make(chan failure, 10)
	m := New(Options{
		Services: func() []Service {
			return []Service{{Name: "web", Interval: time.Second, Servers: []Server{{Addr: "a", Check: spec.Health{UnhealthyThreshold: 2}}}}}
		},
		Unhealthy: func(service, addr string, n int, err error) { failures <- failure{addr, n} },
		Probe:     fp.probe,
		Clock:     clk,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Start(ctx) }()

	// step steps the clock one interval once the monitor waits on its ticker.
	step := func() {
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		clk.Step(time.Second)
	}
	// nextProbe steps the clock until the monitor starts a probe. (A round may come
	// from a tick the ticker held while the last probe was in flight.)
	nextProbe := func() string {
		for {
			select {
			case addr := <-fp.started:
				return addr
			case <-time.After(time.Millisecond):
				clk.Step(time.Second)
			}
		}
	}
	step()
	if got := <-fp.started; got != "a" {
		t.Fatalf("probed %q", got)
	}
	// The first probe hangs: rounds go on, but no second probe of "a" starts.
	for range 5 {
		step()
	}
	fp.answers <- errors.New("refused") // first failure
	nextProbe()
	fp.answers <- errors.New("refused") // second: unhealthy
	if f := <-failures; f.addr != "a" || f.n != 2 {
		t.Fatalf("unhealthy = %+v, want a after 2", f)
	}
	if n := m.Failures("web", "a"); n != 2 {
		t.Fatalf("Failures = %d, want 2", n)
	}
	m.Forget("web", "a")
	if n := m.Failures("web", "a"); n != 0 {
		t.Fatalf("Failures after Forget = %d", n)
	}
	nextProbe() // a probe in flight when the daemon stops
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.worst != 1 {
		t.Fatalf("%d probes of one server were in flight at once, want at most 1", fp.worst)
	}
	if fp.inFlight["a"] != 0 {
		t.Fatal("Start returned with a probe still running")
	}
}
