package door

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-build/kiln/internal/proxy"
)

// service is one service's part of a door: its proxy, its settings, the door's view of
// its upstreams' health, and its counters.
type service struct {
	name    string
	proxy   *proxy.Proxy
	handler http.Handler // the proxy's, with its limits
	log     *slog.Logger
	access  *slog.Logger
	stats   *counters
	groups  [2]*groupCounters // stable, canary

	cfg atomic.Pointer[Service]

	mu      sync.Mutex
	down    map[string]int // failed checks in a row, of upstreams that failed their last
	resumed chan struct{}  // closed when a pause ends; nil when not paused
	stop    context.CancelFunc
	ctx     context.Context
	kick    chan struct{} // the settings changed: the checker looks again
}

func newService(sc Service, opts Options, log *slog.Logger) *service {
	po := opts.Proxy
	po.Logger = log
	po.Middleware = nil
	p := proxy.New(sc.Name, po)
	ctx, cancel := context.WithCancel(context.Background())
	access := opts.AccessLog
	if access == nil {
		access = slog.Default()
	}
	svc := &service{name: sc.Name, proxy: p, handler: p.Handler(), log: log.With("service", sc.Name), access: access,
		stats: newCounters(), groups: [2]*groupCounters{newGroupCounters(), newGroupCounters()}, down: map[string]int{}, ctx: ctx, stop: cancel, kick: make(chan struct{}, 1)}
	svc.cfg.Store(&sc)
	return svc
}

func (s *service) settings() Service { return *s.cfg.Load() }

// configure applies sc: the rotation (less the upstreams found down), pause and checks.
func (s *service) configure(sc Service) {
	sc.Upstreams = slices.Clone(sc.Upstreams)
	if sc.Canary != nil {
		c := *sc.Canary
		c.Upstreams = slices.Clone(c.Upstreams)
		sc.Canary = &c
	}
	s.cfg.Store(&sc)
	s.mu.Lock()
	for a := range s.down {
		if !slices.Contains(sc.checked(), a) {
			delete(s.down, a)
		}
	}
	switch {
	case sc.Paused && s.resumed == nil:
		s.resumed = make(chan struct{})
	case !sc.Paused && s.resumed != nil:
		close(s.resumed)
		s.resumed = nil
	}
	s.rotate()
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// rotate puts in rotation the configured upstreams not found down; when every one is
// down, all of them (the door's checks may be what is wrong, and a server that might
// answer beats a 503). Called with s.mu held.
func (s *service) rotate() {
	sc := s.settings()
	var canary []string
	if sc.Canary != nil {
		canary = s.up(sc.Canary.Upstreams)
	}
	s.proxy.SetRoutes(s.up(sc.Upstreams), canary)
}

// up is addrs less those found down; all of addrs when every one is. Called with s.mu
// held.
func (s *service) up(addrs []string) []string {
	var up []string
	for _, a := range addrs {
		if s.down[a] < s.fall() {
			up = append(up, a)
		}
	}
	if len(up) == 0 {
		return addrs
	}
	return up
}

// checked are the upstreams the door checks: the rotation's and the canary's.
func (sc Service) checked() []string {
	if sc.Canary == nil {
		return sc.Upstreams
	}
	return append(slices.Clone(sc.Upstreams), sc.Canary.Upstreams...)
}

func (s *service) fall() int {
	if f := s.settings().Health.Fall; f > 0 {
		return f
	}
	return defaultFall
}

// Down returns the upstreams the door's checks took out of rotation.
func (s *service) Down() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for a, n := range s.down {
		if n >= s.fall() {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

func (s *service) close() { s.stop() }

// ServeHTTP serves a request routed to the service: held while it is paused, answered
// while in maintenance, otherwise proxied; counted, and logged when asked.
func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	sc := s.settings()
	route := &proxy.Route{Canary: toCanary(sc.Canary, s.name, w, r)}
	s.serve(sw, r.WithContext(proxy.WithRoute(r.Context(), route)))
	took := time.Since(start)
	s.stats.observe(sw.code, took)
	// A side is judged by what its servers did: requests they were sent (not those
	// answered by a pause or maintenance), until their answer's headers (not how fast
	// the client reads the body), but not upgraded connections (their life is the
	// client's) nor requests whose client went away.
	if !route.Start.IsZero() && !sw.upgraded && r.Context().Err() == nil {
		g := s.groups[0]
		if route.Canary {
			g = s.groups[1]
		}
		end := sw.headerAt
		if end.IsZero() {
			end = time.Now()
		}
		g.observe(sw.code, route.Failed, end.Sub(route.Start))
	}
	if sc.AccessLog {
		s.access.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("service", s.name), slog.String("method", r.Method), slog.String("host", r.Host),
			slog.String("path", r.URL.RequestURI()), slog.String("proto", r.Proto), slog.Int("status", sw.code),
			slog.Int64("bytes", sw.bytes), slog.Float64("duration_ms", float64(took.Microseconds())/1000),
			slog.String("remote", r.RemoteAddr), slog.String("user_agent", r.UserAgent()))
	}
}

func (s *service) serve(w http.ResponseWriter, r *http.Request) {
	sc := s.settings()
	if sc.Maintenance != "" {
		w.Header().Set("Retry-After", "30")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, sc.Maintenance)
		return
	}
	if sc.TLS != nil && sc.TLS.HSTS > 0 && r.TLS != nil {
		w.Header().Set("Strict-Transport-Security", "max-age="+strconv.FormatInt(int64(sc.TLS.HSTS/time.Second), 10))
	}
	s.mu.Lock()
	resumed := s.resumed
	s.mu.Unlock()
	if resumed != nil {
		t := time.NewTimer(DefaultPauseTimeout)
		defer t.Stop()
		select {
		case <-resumed:
		case <-t.C:
			w.Header().Set("Retry-After", "5")
			http.Error(w, fmt.Sprintf("kiln: service %s is paused", s.name), http.StatusServiceUnavailable)
			return
		case <-r.Context().Done():
			return
		}
	}
	s.handler.ServeHTTP(w, r)
}

// inRotation returns the addresses the proxy sends new requests to.
func (s *service) inRotation() []string {
	var out []string
	for _, u := range s.proxy.Stats().Upstreams {
		if u.InRotation {
			out = append(out, u.Addr)
		}
	}
	return out
}

// statusWriter remembers the status code and body size of an answer.
type statusWriter struct {
	http.ResponseWriter
	code        int
	bytes       int64
	wroteHeader bool
	headerAt    time.Time // when the answer's headers were written
	upgraded    bool      // a 101: the connection became the client's and the server's
}

func (w *statusWriter) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		w.upgraded = true
	}
	if !w.wroteHeader && code >= 200 {
		w.code, w.wroteHeader, w.headerAt = code, true, time.Now()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.headerAt = time.Now()
	}
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
