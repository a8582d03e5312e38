package engine

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kiln-build/kiln/internal/driver"
)

// leakCheck fails the test if a goroutine started during it outlives it, but for the
// HTTP client's idle connections to servers that are gone (health probes, front
// doors) and the SQLite driver's background work.
func leakCheck(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	}
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		probeClient.CloseIdleConnections()
		goleak.VerifyNone(t, opts...)
	})
}

// startOn runs an engine of d on drv until stop is called; tune may change the engine
// before it starts. cancel ends its context without waiting; stop also waits for Start
// to return.
func (d *simDaemon) startOn(drv driver.Driver, tune func(*Engine)) (e *Engine, cancel context.CancelFunc, stop func()) {
	e = New(Options{State: d.state, Images: d.images, Driver: drv, Project: "sim", StateDir: d.dir, Log: d.log, Resync: time.Hour})
	if tune != nil {
		tune(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		if err := e.Start(ctx); err != nil {
			d.t.Errorf("Start: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-ch
		})
	}
	d.t.Cleanup(stop)
	return e, cancel, stop
}

// fleet samples a service's servers as the simulated runtime lists them.
type fleet struct {
	d       *simDaemon
	service string
	mu      sync.Mutex
	most    int // most servers running at once (listed and not exited)
	listed  int // most servers listed at once (stopped ones awaiting removal too)
	fewest  int // fewest of them answering HTTP at once
}

func newFleet(d *simDaemon, service string) *fleet {
	return &fleet{d: d, service: service, fewest: 1 << 30}
}

// probeClient keeps its connections to the servers. A full crash sweep probes every
// listed server twice at each of some 7,000 points: a new connection per probe is
// thousands of loopback connections a second, and the kernel's connection tracking
// keeps each for two minutes after it closes (TIME_WAIT). Once its table is full
// (nf_conntrack_max), the SYNs of new connections are dropped and sent again 1 s, then
// 3 s later: servers that serve read as down, and the rollout under test, which waits
// for the probes at every point, stalls behind them. A kept connection answers as the
// server does: a simulated server that stops closes its connections with its
// listener, and a request on a connection the server has closed is sent again on a
// new one.
var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

// sample lists the servers and probes each; it uses the simulated driver itself, never
// the fault injector.
func (f *fleet) sample() {
	// A server listed and then retired by the rollout before its probe reads as down
	// although its replacement already serves: the healthy count of a point is the
	// better of two listings in a row. A real dip (a server retired before its
	// replacement serves) lasts across calls, so it is still seen.
	most, listed, healthy := 0, 0, 0
	for range 2 {
		r, n, h, ok := f.look()
		if !ok {
			return
		}
		most, listed, healthy = max(most, r), max(listed, n), max(healthy, h)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.most = max(f.most, most)
	f.listed = max(f.listed, listed)
	f.fewest = min(f.fewest, healthy)
}

// look lists the service's servers and probes each: how many run (are not exited),
// how many are listed, and how many of them answer.
func (f *fleet) look() (running, listed, healthy int, ok bool) {
	servers, err := f.d.drv.List(context.Background(), driver.Selector{Project: "sim", Service: f.service})
	if err != nil {
		f.d.t.Error(err)
		return 0, 0, 0, false
	}
	for _, s := range servers {
		if s.State != driver.StateExited {
			running++
		}
		resp, err := probeClient.Get("http://" + s.Address + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body) // read to its end: a connection is kept only then
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				healthy++
			}
		}
	}
	return running, len(servers), healthy, true
}

// worst is the most servers running and listed at once, and the fewest healthy.
func (f *fleet) worst() (most, listed, fewest int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.most, f.listed, f.fewest
}
