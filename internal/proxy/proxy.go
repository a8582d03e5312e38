package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-build/kiln/internal/httpguard"
)

// Options tune a Proxy; the zero value is ready to use.
type Options struct {
	// WaitForUpstream is how long a request waits for a server to be put in rotation
	// when there is none (or none left to retry on) before it is answered 503. Zero
	// means DefaultWaitForUpstream; negative means not to wait.
	WaitForUpstream time.Duration
	// ShutdownTimeout bounds how long Serve waits, once its ctx ends, for requests in
	// flight to finish. Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives proxy errors; slog.Default() if nil.
	Logger *slog.Logger
	// Middleware, if set, wraps the proxy's handler in Serve: for metrics.
	Middleware func(http.Handler) http.Handler

	// What one client can hold (see the README). Zero means the default below;
	// negative, for MaxRequestBody, MaxConns and BodyMinRate, means no limit.
	MaxRequestBody    int64         // bytes of a request body; a longer one is answered 413
	MaxConns          int           // client connections open at once; more wait to be accepted
	ReadHeaderTimeout time.Duration // to read a request's headers
	IdleTimeout       time.Duration // a kept-alive connection waits this long for its next request
	// A request body may wait BodyGrace for the client, then must come at BodyMinRate
	// bytes a second on average, or the request fails (408) and its connection closes.
	BodyGrace   time.Duration
	BodyMinRate int64
}

// Defaults of Options.
const (
	DefaultWaitForUpstream = 5 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultMaxRequestBody is about what Cloudflare's common plans accept (100 MB):
	// the sites of the field already live within it, while nginx's 1 MiB is the
	// setting its users most often raise. Bodies are streamed, not buffered: the limit
	// protects the services, many of which read a body whole into memory.
	DefaultMaxRequestBody = 100 << 20
	// DefaultMaxConns bounds the goroutines and buffers clients can pin (some 10 KiB
	// each, more for upgraded connections); nginx's default is 512 per worker.
	DefaultMaxConns          = 4096
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	// DefaultBodyGrace and DefaultBodyMinRate follow Apache's mod_reqtimeout
	// (body=20,MinRate=500), with twice its rate: a phone on a poor network sends
	// tens of KiB a second; a slowloris client, a byte every few seconds.
	DefaultBodyGrace   = 20 * time.Second
	DefaultBodyMinRate = 1 << 10

	// maxHeaderBytes bounds a request's headers: big cookies fit, as in nginx's
	// large_client_header_buffers (4 x 8k) several times over.
	maxHeaderBytes = 64 << 10
)

// Proxy is the front door of one service. Its methods are safe for concurrent use.
type Proxy struct {
	name string
	mw   func(http.Handler) http.Handler
	wait time.Duration
	stop time.Duration
	log  *slog.Logger
	rp   *httputil.ReverseProxy
	tr   *http.Transport
	body httpguard.Body
	// conns is MaxConns (0: none).
	conns      int
	readHeader time.Duration
	idle       time.Duration

	// mu guards the fields below. pick holds it for reading while it counts a request
	// in, so once SetUpstreams returns, every request to a server it took out of
	// rotation is counted where WaitIdle looks.
	mu      sync.RWMutex
	set     []*upstream          // in rotation; replaced, never modified
	canary  []*upstream          // in the canary's rotation (see SetRoutes); the same
	known   map[string]*upstream // in rotation, or out of it with requests in flight
	changed chan struct{}        // closed (and replaced) by SetRoutes

	next     atomic.Uint64 // round-robin offset, to break ties
	requests atomic.Uint64
	failures atomic.Uint64
	retries  atomic.Uint64
}

var _ http.Handler = (*Proxy)(nil)

// New returns the front door of the service name, with no server in rotation. It starts
// nothing: call Serve.
func New(name string, opts Options) *Proxy {
	p := &Proxy{
		name: name,
		mw:   opts.Middleware,
		wait: cmp.Or(opts.WaitForUpstream, DefaultWaitForUpstream),
		stop: cmp.Or(opts.ShutdownTimeout, DefaultShutdownTimeout),
		log:  cmp.Or(opts.Logger, slog.Default()).With("service", name),
		tr:   newTransport(),
		body: httpguard.Body{
			Max:     orDefault(opts.MaxRequestBody, DefaultMaxRequestBody),
			Grace:   cmp.Or(opts.BodyGrace, DefaultBodyGrace),
			MinRate: orDefault(opts.BodyMinRate, DefaultBodyMinRate),
		},
		conns:      int(orDefault(int64(opts.MaxConns), DefaultMaxConns)),
		readHeader: cmp.Or(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		idle:       cmp.Or(opts.IdleTimeout, DefaultIdleTimeout),
		known:      map[string]*upstream{},
		changed:    make(chan struct{}),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    roundTripper(p.roundTrip),
		ErrorHandler: p.fail,
		ErrorLog:     slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		BufferPool:   bufferPool{},
	}
	return p
}

// orDefault is v, def for zero, and zero (no limit) for negative.
func orDefault(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully: it stops
// accepting, lets requests in flight finish (within ShutdownTimeout), closes upgraded
// connections (WebSockets) and returns nil. It closes ln. A Proxy is served at most
// once at a time.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	defer p.tr.CloseIdleConnections()
	conns := p.conns
	if conns == 0 {
		conns = -1 // no limit
	}
	return ServeHandler(ctx, ln, p.Handler(), Listener{MaxConns: conns, ReadHeaderTimeout: p.readHeader,
		IdleTimeout: p.idle, ShutdownTimeout: p.stop, Logger: p.log})
}

// Listener is what ServeHandler bounds a listener's clients by; zero values mean the
// defaults of Options (MaxConns: negative for no limit).
type Listener struct {
	MaxConns          int
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	Logger            *slog.Logger
	// TLS, when set, serves HTTPS (HTTP/2 when its NextProtos offer "h2") on ln.
	TLS *tls.Config
}

// ServeHandler serves h on ln as Serve serves a proxy: with the limits of l, until ctx
// ends, then gracefully. A door serving several services on one address serves its
// router this way, each service's Handler behind it.
func ServeHandler(ctx context.Context, ln net.Listener, h http.Handler, l Listener) error {
	log := cmp.Or(l.Logger, slog.Default())
	// Requests are not cancelled when ctx ends, only once the shutdown is over: this is
	// what ends upgraded connections, which http.Server.Shutdown does not track.
	base, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	conns := httpguard.NewConns(int(orDefault(int64(l.MaxConns), DefaultMaxConns)))
	fresh := &freshConns{conns: map[net.Conn]bool{}}
	srv := &http.Server{
		Handler: h,
		ConnState: func(c net.Conn, st http.ConnState) {
			fresh.track(c, st)
			conns.ConnState(c, st)
		},
		BaseContext: func(net.Listener) context.Context { return base },
		// No overall read or write timeout: a long upload, download or stream is not an
		// error. Bodies are bounded by rate instead (handler), slow readers of answers by
		// MaxConns.
		ReadHeaderTimeout: cmp.Or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       cmp.Or(l.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         l.TLS,
	}
	errc := make(chan error, 1)
	go func() {
		if l.TLS != nil {
			errc <- srv.ServeTLS(conns.Listener(ln), "", "")
			return
		}
		errc <- srv.Serve(conns.Listener(ln))
	}()
	var failed error
	select {
	case failed = <-errc:
		// The listener failed, or was closed under the server (a door handing its
		// sockets over): what it accepted finishes, as below.
	case <-ctx.Done():
		// Accepting stops first: the connections already accepted get their first
		// request read and served before the shutdown begins (a request read once it
		// has begun is dropped, and a client does not send a first request again).
		ln.Close()
		<-errc
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(l.ShutdownTimeout, DefaultShutdownTimeout))
	defer cancel()
	fresh.wait(sctx)
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	if failed != nil {
		return fmt.Errorf("serving %s: %w", ln.Addr(), failed)
	}
	if err != nil {
		return fmt.Errorf("shutting down %s: %w", ln.Addr(), err)
	}
	return nil
}

// freshConns are a server's connections whose first request is not read yet.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		f.conns[c] = true
	} else {
		delete(f.conns, c)
	}
}

// wait returns once no connection is fresh, or ctx ends.
func (f *freshConns) wait(ctx context.Context) {
	for {
		f.mu.Lock()
		n := len(f.conns)
		f.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ServeHTTP proxies r to a server in rotation.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	f := &flight{}
	defer f.land()
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), flightKey{}, f)))
}

// SetUpstreams replaces the servers in rotation with addrs ("host:port"), which the
// caller has found healthy, and ends any canary (see SetRoutes). New requests go only
// to addrs from when it returns; requests in flight to a server no longer in rotation
// carry on: WaitIdle waits for them.
func (p *Proxy) SetUpstreams(addrs []string) { p.SetRoutes(addrs, nil) }

// SetRoutes replaces, in one change, the servers in rotation with stable and the
// canary's with canary: the requests a Route marks as the canary's go to the canary's
// servers (to the rotation's when none is left to try), the rest to the rotation. An
// address in both is the rotation's. Requests in flight to a server in neither carry
// on, as with SetUpstreams.
func (p *Proxy) SetRoutes(stable, canary []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := map[string]bool{}
	build := func(addrs []string) []*upstream {
		var set []*upstream
		for _, a := range addrs {
			if in[a] {
				continue
			}
			in[a] = true
			u := p.known[a]
			if u == nil {
				u = &upstream{addr: a}
				p.known[a] = u
			}
			set = append(set, u)
		}
		return set
	}
	p.set = build(stable)
	p.canary = build(canary)
	for a, u := range p.known {
		if !in[a] && u.inflight.Load() == 0 {
			delete(p.known, a) // out of rotation, so its count can no longer rise
		}
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// WaitIdle blocks until no request is in flight to addr, or ctx ends. Called after
// SetUpstreams has taken addr out of rotation, it returns once the server can be
// destroyed without failing a request; it returns at once for an address it does not
// know. The error wraps ctx's error and says how many requests were left in flight.
func (p *Proxy) WaitIdle(ctx context.Context, addr string) error {
	p.mu.RLock()
	u := p.known[addr]
	p.mu.RUnlock()
	if u == nil {
		return nil
	}
	// Poll, as http.Server.Shutdown does: draining takes as long as the slowest
	// request, and the hot path stays free of wake-ups.
	delay := time.Millisecond
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		n := u.inflight.Load()
		if n == 0 {
			p.forget(u)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("draining %s: %d in flight: %w", addr, n, context.Cause(ctx))
		case <-timer.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
		timer.Reset(delay)
	}
}

// forget drops u if it is out of rotation and idle.
func (p *Proxy) forget(u *upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known[u.addr] == u && !slices.Contains(p.set, u) && !slices.Contains(p.canary, u) && u.inflight.Load() == 0 {
		delete(p.known, u.addr)
	}
}

// Stats are a Proxy's counters since New.
type Stats struct {
	Requests  uint64          // requests received
	Failures  uint64          // requests answered with an error by the proxy (502, 503)
	Retries   uint64          // requests sent again to another server
	Upstreams []UpstreamStats // in rotation or draining, by address
}

// UpstreamStats are the counters of one server.
type UpstreamStats struct {
	Addr       string
	InRotation bool
	Canary     bool // in the canary's rotation
	InFlight   int64
	Requests   uint64 // attempts sent to it, retries included
	Failures   uint64 // attempts that failed before a response (refused, reset...)
}

// Stats returns the proxy's counters. A server's counters are dropped once it is out of
// rotation and idle.
func (p *Proxy) Stats() Stats {
	p.mu.RLock()
	defer p.mu.RUnlock()
	s := Stats{Requests: p.requests.Load(), Failures: p.failures.Load(), Retries: p.retries.Load()}
	for _, u := range p.known {
		s.Upstreams = append(s.Upstreams, UpstreamStats{
			Addr:       u.addr,
			InRotation: slices.Contains(p.set, u) || slices.Contains(p.canary, u),
			Canary:     slices.Contains(p.canary, u),
			InFlight:   u.inflight.Load(),
			Requests:   u.requests.Load(),
			Failures:   u.failures.Load(),
		})
	}
	slices.SortFunc(s.Upstreams, func(a, b UpstreamStats) int { return cmp.Compare(a.Addr, b.Addr) })
	return s
}

// errNoUpstream means no server was in rotation within WaitForUpstream.
var errNoUpstream = errors.New("no server in rotation")

// fail answers a request the proxy could not serve.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away: there is nobody to answer, and it is not our failure.
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	if httpguard.TooLarge(err) {
		// Found out while streaming a chunked body: the client's doing, not a failure.
		w.Header().Set("Connection", "close")
		http.Error(w, fmt.Sprintf("kiln: the request body is larger than the %d bytes service %s accepts", p.body.Max, p.name), http.StatusRequestEntityTooLarge)
		return
	}
	p.failures.Add(1)
	if errors.Is(err, errNoUpstream) {
		p.log.Warn("no server in rotation", "method", r.Method, "path", r.URL.Path, "waited", p.wait)
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("kiln: service %s has no healthy server", p.name), http.StatusServiceUnavailable)
		return
	}
	p.log.Warn("proxy error", "method", r.Method, "path", r.URL.Path, "error", err)
	http.Error(w, fmt.Sprintf("kiln: service %s: bad gateway", p.name), http.StatusBadGateway)
}

// rewrite keeps the path and the Host the client asked for (apps build URLs from it).
// The headers that tell a server who its client is are the door's to set, as Traefik
// and kamal-proxy do for clients they do not trust (the door trusts none): the client's
// own (Forwarded, X-Forwarded-*, X-Real-IP...) are removed, and X-Forwarded-For (the
// client's address as the door sees it), X-Real-IP (the same), X-Forwarded-Host (the
// Host), X-Forwarded-Proto (http or https) and Forwarded (all three, RFC 7239) are set. The server is chosen per attempt, in
// roundTrip.
func rewrite(pr *httputil.ProxyRequest) {
	// httputil.ReverseProxy has removed Forwarded and X-Forwarded-For, -Host and
	// -Proto; these are the others frameworks read.
	for k := range pr.Out.Header {
		if strings.HasPrefix(k, "X-Forwarded-") || slices.Contains(clientClaims, k) {
			delete(pr.Out.Header, k)
		}
	}
	pr.SetXForwarded()
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		pr.Out.Header.Set("X-Real-Ip", ip)
		proto := "http"
		if pr.In.TLS != nil {
			proto = "https"
		}
		pr.Out.Header.Set("Forwarded", forwarded(ip, pr.In.Host, proto))
	}
	pr.Out.Host = pr.In.Host
	pr.Out.URL.Scheme = "http"
}

// forwarded is the RFC 7239 Forwarded header of a request from ip for host over proto.
func forwarded(ip, host, proto string) string {
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]" // an IPv6 node is quoted, in brackets
	}
	return fmt.Sprintf("for=%q;host=%q;proto=%s", ip, host, proto)
}

// clientClaims are headers (canonical) through which a client could pass itself off as
// someone else to a server that believes its proxy set them.
var clientClaims = []string{"Forwarded", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "X-Cluster-Client-Ip",
	"X-Original-Forwarded-For", "X-Url-Scheme", "Front-End-Https"}

type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte  { return buffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) { buffers.Put((*[32 << 10]byte)(b)) }

// Handler is what Serve serves: the proxy behind Middleware, the body limit and panic
// recovery.
func (p *Proxy) Handler() http.Handler {
	var h http.Handler = p
	if p.mw != nil {
		h = p.mw(p)
	}
	h = p.body.Limit(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // not to read a body we refuse
		http.Error(w, fmt.Sprintf("kiln: the request body is larger than the %d bytes service %s accepts", p.body.Max, p.name), http.StatusRequestEntityTooLarge)
	}, h)
	return httpguard.Recover(p.log, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("kiln: service %s: internal error in its front door", p.name), http.StatusInternalServerError)
	}, h)
}
