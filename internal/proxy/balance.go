package proxy

import (
	"context"
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
// connection; ties go round robin. A request of the canary (canary true) is given one
// of the canary's servers while one is left to try, then one of the others; any other
// request, one of the rotation (the canary's when the rotation is empty). It counts
// the request in flight on the chosen server before the read lock is released (see
// Proxy.mu). If there is no candidate it returns nil and a channel that is closed when
// the set changes.
func (p *Proxy) pick(tried []*upstream, canary bool) (*upstream, <-chan struct{}) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	first, second := p.set, p.canary
	if canary {
		first, second = second, first
	}
	best := p.pickFrom(first, tried)
	if best == nil {
		best = p.pickFrom(second, tried)
	}
	if best == nil {
		return nil, p.changed
	}
	best.inflight.Add(1)
	return best, nil
}

// pickFrom is pick's choice within set; nil when no server of it is left to try.
// Called with p.mu held for reading.
func (p *Proxy) pickFrom(set, tried []*upstream) *upstream {
	n := len(set)
	if n == 0 {
		return nil
	}
	var (
		best     *upstream
		bestLoad int64
		bestDown bool
		now      int64
	)
	start := int(p.next.Add(1) % uint64(n))
	for i := range n {
		u := set[(start+i)%n]
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
	return best
}

// Route is what the caller of a request's ServeHTTP chooses and learns of it: put in
// the request's context (WithRoute), it sends the request to the canary's servers, and
// says when it was first sent and whether an attempt failed on the way (a connection
// refused or reset: a transport error, even if another server then answered).
type Route struct {
	Canary bool
	// Set by the proxy, on the request's goroutine: Start when the first attempt is
	// sent to a server (zero if none was); Failed when an attempt failed on a server
	// while the client was still there.
	Start  time.Time
	Failed bool
}

type routeKey struct{}

// WithRoute returns ctx carrying r, for a request the proxy serves.
func WithRoute(ctx context.Context, r *Route) context.Context {
	return context.WithValue(ctx, routeKey{}, r)
}

func routeOf(ctx context.Context) *Route {
	r, _ := ctx.Value(routeKey{}).(*Route)
	return r
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
