package door

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/kiln-build/kiln/internal/doortls"
	"github.com/kiln-build/kiln/internal/proxy"
)

// Options configure a Server; the zero value serves with proxy's defaults, keeps no
// configuration on disk and logs to slog.Default().
type Options struct {
	// Dir, when set, is where the configuration is persisted (ConfigFile) before Apply
	// returns, and certificates are cached.
	Dir string
	// Proxy tunes each service's proxy (Middleware aside); Log receives the door's log
	// and, as JSON lines, the access logs of services that ask for them.
	Proxy     proxy.Options
	Log       *slog.Logger
	AccessLog *slog.Logger
	// Inherit holds the listeners a door took over from the one it replaces (see
	// TakeOver), by listener key: Apply serves them instead of listening anew.
	Inherit map[string]net.Listener
}

// Server serves a Config: one listener per address, each routing to the services on it.
// Its methods are safe for concurrent use; none closes a listener under its lock.
type Server struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	cfg       Config
	certs     map[string]*certs    // the certificates of each TLS listener, by address
	listeners map[string]*listener // by address
	services  map[string]*service  // by name
	closed    bool
	work      sync.WaitGroup // listeners being served, checkers running
}

// New returns a door serving nothing; Apply configures it.
func New(opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	return &Server{opts: opts, log: log, listeners: map[string]*listener{}, services: map[string]*service{}}
}

// Config returns the configuration the door serves.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// ErrStale is Apply's error for a configuration older than the one served.
var ErrStale = errors.New("the configuration is older than the one the door serves")

// Apply makes the door serve cfg: it listens on the new addresses first (an address it
// cannot listen on fails the whole Apply, and nothing changes), then switches routes and
// rotations, persists cfg (with Options.Dir), and closes the listeners no longer used,
// letting their requests finish. The servers in a service's rotation are cfg's, less
// those the door's own checks found down.
func (s *Server) Apply(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("the door is shutting down")
	}
	if cur := s.cfg.Generation; cfg.Generation < cur {
		s.mu.Unlock()
		return fmt.Errorf("%w (%d < %d)", ErrStale, cfg.Generation, cur)
	}
	ks, err := kinds(cfg)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	opened, err := s.openListeners(cfg, ks)
	if err == nil {
		if err = s.prepareTLS(cfg, ks); err != nil {
			for _, l := range opened {
				l.ln.Close()
			}
		}
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	for _, ln := range opened {
		s.listeners[ln.addr] = ln
		s.serve(ln)
	}
	var gone []*service
	for _, sc := range cfg.Services {
		svc := s.services[sc.Name]
		if svc == nil {
			svc = newService(sc, s.opts, s.log)
			s.services[sc.Name] = svc
			s.work.Add(1)
			go func() { defer s.work.Done(); svc.check() }()
		}
		svc.configure(sc)
	}
	for name, svc := range s.services {
		if _, ok := cfg.service(name); !ok {
			delete(s.services, name)
			gone = append(gone, svc)
		}
	}
	var unused []*listener
	for addr, ln := range s.listeners {
		var routes []route
		for _, sc := range cfg.Services {
			if listenKey(sc) == addr {
				routes = append(routes, routesOf(sc, s.services[sc.Name])...)
			}
		}
		if _, ok := ks[addr]; !ok {
			delete(s.listeners, addr)
			unused = append(unused, ln)
			continue
		}
		ln.setRoutes(routes)
	}
	s.cfg = cfg
	var perr error
	if s.opts.Dir != "" {
		perr = save(s.opts.Dir, cfg)
	}
	s.mu.Unlock()
	for _, ln := range unused {
		ln.stop()
	}
	for _, svc := range gone {
		svc.close()
	}
	return perr
}

// openListeners listens on the addresses of ks the door does not listen on yet (a
// listener that must serve another protocol is closed first, its requests finishing
// meanwhile); on an error it closes what it opened. Called with s.mu held (a listen
// does not block).
func (s *Server) openListeners(cfg Config, ks map[string]listenerKind) ([]*listener, error) {
	var opened []*listener
	for _, addr := range slices.Sorted(maps.Keys(ks)) {
		kind := ks[addr]
		if old := s.listeners[addr]; old != nil {
			if old.kind == kind {
				continue
			}
			delete(s.listeners, addr)
			old.ln.Close()
			go old.stop()
		}
		ln, err := s.listenKey(addr)
		if err != nil {
			for _, l := range opened {
				l.ln.Close()
			}
			who := "a redirect to HTTPS"
			for _, sc := range cfg.Services {
				if listenKey(sc) == addr {
					who = "service " + sc.Name
				}
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("%s cannot listen on %s: the address is already in use by another program (change `listen` in the spec, or stop that program)", who, listenAddr(addr))
			}
			if errors.Is(err, syscall.EACCES) {
				return nil, fmt.Errorf("%s cannot listen on %s: a port below 1024 needs the daemon to run as root (the front door runs as the daemon's user, allowed only to bind such a port): run kiln as root, or use a port of 1024 or more", who, listenAddr(addr))
			}
			return nil, fmt.Errorf("%s: listening on %s: %w", who, listenAddr(addr), err)
		}
		l := newListener(addr, ln)
		l.kind = kind
		opened = append(opened, l)
	}
	return opened, nil
}

// listenKey opens the listener named key: the one inherited for it, else a new one.
// Called with s.mu held.
func (s *Server) listenKey(key string) (net.Listener, error) {
	if ln := s.opts.Inherit[key]; ln != nil {
		delete(s.opts.Inherit, key)
		return ln, nil
	}
	return s.listen(listenAddr(key))
}

func (s *Server) listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// serve serves ln until it is stopped. Called with s.mu held.
func (s *Server) serve(ln *listener) {
	s.work.Add(1)
	limits := proxy.Listener{
		MaxConns: s.opts.Proxy.MaxConns, ReadHeaderTimeout: s.opts.Proxy.ReadHeaderTimeout,
		IdleTimeout: s.opts.Proxy.IdleTimeout, ShutdownTimeout: s.opts.Proxy.ShutdownTimeout, Logger: s.log,
	}
	run := func(l net.Listener, h http.Handler, tlsConf *tls.Config) error {
		lim := limits
		lim.TLS = tlsConf
		err := proxy.ServeHandler(ln.ctx, l, h, lim)
		if err != nil && ln.ctx.Err() == nil && !ln.released.Load() {
			s.log.Error("a front door stopped serving", "listen", ln.addr, "error", err)
		}
		return err
	}
	go func() {
		defer s.work.Done()
		defer close(ln.done)
		switch k := ln.kind; {
		case k.redirectTo != 0:
			run(ln.ln, s.redirect(k.redirectTo), nil)
		case k.tls && k.redirect:
			_, port, _ := net.SplitHostPort(ln.ln.Addr().String())
			p, _ := strconv.Atoi(port)
			secure, plain := doortls.SplitPlain(ln.ln)
			var wg sync.WaitGroup
			wg.Go(func() { run(plain, s.redirect(p), nil) })
			run(secure, ln, s.tlsConfig(ln.addr))
			wg.Wait()
		case k.tls:
			run(ln.ln, ln, s.tlsConfig(ln.addr))
		default:
			run(ln.ln, ln, nil)
		}
	}()
}

// tlsConfig is the configuration of the TLS listener on addr: certificates from its
// manager in use at each handshake, HTTP/2.
func (s *Server) tlsConfig(addr string) *tls.Config {
	current := func() *certs {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.certs[addr]
	}
	conf := (&doortls.Manager{}).TLSConfig()
	if c := current(); c != nil {
		conf = c.mgr.TLSConfig()
	}
	conf.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := current()
		if c == nil {
			return nil, errNoCerts
		}
		return c.mgr.GetCertificate(hello)
	}
	return conf
}

// redirect answers plain HTTP with a redirect to HTTPS on port (and the ACME HTTP-01
// challenges of the TLS listener on that port).
func (s *Server) redirect(port int) http.Handler {
	to := doortls.Redirect(port)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		var c *certs
		for addr, cs := range s.certs {
			if _, p, _ := net.SplitHostPort(listenAddr(addr)); p == strconv.Itoa(port) {
				c = cs
			}
		}
		s.mu.Unlock()
		if c == nil {
			to.ServeHTTP(w, r)
			return
		}
		c.mgr.HTTPHandler(to).ServeHTTP(w, r)
	})
}

// Check reports whether the door could listen on addr: nil when it listens there
// already or the address is free (it is not kept).
func (s *Server) Check(_ context.Context, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners[addr] != nil {
		return nil
	}
	ln, err := s.listen(addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// Listeners returns the addresses the door listens on, as configured, and the address
// each is bound to (a ":0" port resolved).
func (s *Server) Listeners() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.listeners))
	for addr, ln := range s.listeners {
		out[addr] = ln.ln.Addr().String()
	}
	return out
}

// Drain waits until no request is in flight to the servers at addrs of service (taken
// out of its rotation by an Apply), for at most the service's drain timeout: the
// requests still in flight then are left to be cut (logged), and Drain returns nil. It
// returns ctx's error, saying how many were left, if ctx ends first.
func (s *Server) Drain(ctx context.Context, service string, addrs []string) error {
	s.mu.Lock()
	svc := s.services[service]
	s.mu.Unlock()
	if svc == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, svc.settings().drainTimeout())
	defer cancel()
	for _, a := range addrs {
		if err := svc.proxy.WaitIdle(dctx, a); err != nil {
			if ctx.Err() != nil {
				return err
			}
			svc.log.Warn("drain_timeout passed: the requests still in flight to the server are cut when it stops", "server", a, "error", err)
		}
	}
	return nil
}

// Shutdown stops the door: every listener stops accepting and its requests finish
// (within the proxy's shutdown bound), the checks stop. The configuration on disk is
// kept, for the next door.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.closed = true
	lns := s.listeners
	svcs := s.services
	s.listeners, s.services = map[string]*listener{}, map[string]*service{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Go(ln.stop)
	}
	wg.Wait()
	for _, svc := range svcs {
		svc.close()
	}
	s.work.Wait()
}
