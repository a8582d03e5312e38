package proxy

import (
	"slices"
	"sync/atomic"
	"time"
)

// upstream is one server the proxy sends requests to.
type upstream struct {
	addr     string
	inflight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
	// downUntil (unix nanoseconds) is set when a connection to the server could not be
	// opened: until then, pick prefers other servers.
	downUntil atomic.Int64
}

// downFor is how long a server that refused a connection is avoided. It is short: the
// health checker, not the proxy, decides what is in rotation.
const downFor = time.Second

func (u *upstream) markDown() { u.downUntil.Store(time.Now().Add(downFor).UnixNano()) }

// pick chooses, among the servers in rotation that are not in tried, the one with the
// fewest requests in flight, preferring servers that have not just refused a
// connection; ties go round robin. It counts the request in flight on the chosen
// server before the read lock is released (see Proxy.mu). If there is no candidate it
// returns nil and a channel that is closed when the set changes.
func (p *Proxy) pick(tried []*upstream) (*upstream, <-chan struct{}) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := len(p.set)
	if n == 0 {
		return nil, p.changed
	}
	var (
		best     *upstream
		bestLoad int64
		bestDown bool
		now      int64
	)
	start := int(p.next.Add(1) % uint64(n))
	for i := range n {
		u := p.set[(start+i)%n]
		if slices.Contains(tried, u) {
			continue
		}
		down := false
		if until := u.downUntil.Load(); until != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			down = until > now
		}
		load := u.inflight.Load()
		if best == nil || (bestDown && !down) || (down == bestDown && load < bestLoad) {
			best, bestLoad, bestDown = u, load, down
		}
	}
	if best == nil {
		return nil, p.changed
	}
	best.inflight.Add(1)
	return best, nil
}

// flight is the server one request is counted in flight on. The request's attempts run
// on its handler's goroutine, one after the other, so it needs no lock.
type flight struct{ on *upstream }

type flightKey struct{}

// take counts the request on u, releasing the server of a previous attempt.
func (f *flight) take(u *upstream) {
	f.land()
	f.on = u
}

// land ends the request's flight: it is called when the handler returns, that is once
// the response has been copied to the client (or the upgraded connection closed).
func (f *flight) land() {
	if f.on != nil {
		f.on.inflight.Add(-1)
		f.on = nil
	}
}
