package monitor

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/kiln-build/kiln/internal/health"
	"github.com/kiln-build/kiln/internal/spec"
)

// Tick is how often the monitor looks for services due for a round of probes.
const Tick = 100 * time.Millisecond

// Service is what the monitor probes of one service: the servers in rotation, each with
// the health check it is probed with, and how often.
type Service struct {
	Name     string
	Interval time.Duration
	Servers  []Server
}

// Server is one server in rotation, by address, and the check it is probed with (its
// UnhealthyThreshold is how many failed probes in a row make it unhealthy).
type Server struct {
	Addr  string
	Check spec.Health
}

// Options configure a Monitor. Services is required.
type Options struct {
	// Services lists, at every tick, what to probe. It must not block.
	Services func() []Service
	// Unhealthy is called, from the probe's goroutine, when a server has failed its
	// check's UnhealthyThreshold probes in a row: once, when the count reaches it.
	Unhealthy func(service, addr string, failures int, err error)
	// Probed is called after every probe with how long it took (metrics); may be nil.
	Probed func(service string, took time.Duration)
	// Probe checks one server; health.Probe when nil.
	Probe func(ctx context.Context, addr string, c health.Check) error
	// Clock is real time when nil.
	Clock clock.WithTicker
}

// Monitor is the health monitor. Its zero value is not usable: call New.
type Monitor struct {
	opts Options

	mu       sync.Mutex
	last     map[string]time.Time // the last round of each service
	inFlight map[key]bool
	failing  map[key]int // consecutive failed probes
}

type key struct{ service, addr string }

// New returns a monitor; it probes nothing until Start.
func New(opts Options) *Monitor {
	if opts.Probe == nil {
		opts.Probe = health.Probe
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Monitor{opts: opts, last: map[string]time.Time{}, inFlight: map[key]bool{}, failing: map[key]int{}}
}

// Start probes until ctx ends, then waits for the probes in flight (which end with
// ctx) and returns nil.
func (m *Monitor) Start(ctx context.Context) error {
	var probes sync.WaitGroup
	defer probes.Wait()
	tick := m.opts.Clock.NewTicker(Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
		}
		for _, p := range m.due() {
			probes.Go(func() { m.probe(ctx, p.service, p.server) })
		}
	}
}

type due struct {
	service string
	server  Server
}

// due returns the probes to start now, marking them in flight: the servers of each
// service whose interval has passed since its last round, but not a server whose last
// probe has not answered yet.
func (m *Monitor) due() []due {
	services := m.opts.Services()
	now := m.opts.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []due
	for _, s := range services {
		if last, ok := m.last[s.Name]; ok && now.Sub(last) < s.Interval {
			continue
		}
		m.last[s.Name] = now
		for _, srv := range s.Servers {
			k := key{s.Name, srv.Addr}
			if m.inFlight[k] {
				continue
			}
			m.inFlight[k] = true
			out = append(out, due{s.Name, srv})
		}
	}
	return out
}

func (m *Monitor) probe(ctx context.Context, service string, s Server) {
	k := key{service, s.Addr}
	start := m.opts.Clock.Now()
	err := m.opts.Probe(ctx, s.Addr, health.Check{HTTPPath: s.Check.HTTP, TCP: s.Check.TCP, Timeout: s.Check.Timeout})
	if m.opts.Probed != nil {
		m.opts.Probed(service, m.opts.Clock.Since(start))
	}
	m.mu.Lock()
	delete(m.inFlight, k)
	if ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	if err == nil {
		delete(m.failing, k)
		m.mu.Unlock()
		return
	}
	m.failing[k]++
	n := m.failing[k]
	m.mu.Unlock()
	if n == max(s.Check.UnhealthyThreshold, 1) && m.opts.Unhealthy != nil {
		m.opts.Unhealthy(service, s.Addr, n, err)
	}
}

// Failures returns how many probes in a row the server at addr of service has failed.
func (m *Monitor) Failures(service, addr string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failing[key{service, addr}]
}

// Forget drops what the monitor knows of the server at addr (it was replaced).
func (m *Monitor) Forget(service, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.failing, key{service, addr})
}
