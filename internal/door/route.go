package door

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/kiln-build/kiln/internal/api"
)

// listener is one address of the door and the routes of the services on it.
type listener struct {
	addr   string
	kind   listenerKind
	ln     net.Listener
	routes atomic.Pointer[[]route] // most specific first
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// released: its socket was handed to a newer door, which accepts on it now.
	released atomic.Bool
}

func newListener(addr string, ln net.Listener) *listener {
	ctx, cancel := context.WithCancel(context.Background())
	return &listener{addr: addr, ln: ln, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// stop stops accepting and waits for the requests in flight (the proxy's bound).
func (l *listener) stop() {
	l.cancel()
	<-l.done
}

// route sends the requests for host (exact, "*.suffix", or "" for any) under path to a
// service.
type route struct {
	host  string
	path  string // "/" or a prefix without trailing slash
	strip bool
	to    *service
}

// routesOf returns the routes of service sc, served by svc.
func routesOf(sc Service, svc *service) []route {
	hosts := sc.Hosts
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	var out []route
	for _, h := range hosts {
		out = append(out, route{host: strings.ToLower(h), path: cleanPath(sc.Path), strip: sc.StripPath, to: svc})
	}
	return out
}

func (l *listener) setRoutes(rs []route) {
	rs = slices.Clone(rs)
	// Exact hosts before wildcards before any host; longer paths first.
	rank := func(r route) int {
		switch {
		case r.host == "":
			return 2
		case strings.HasPrefix(r.host, "*."):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(rs, func(a, b route) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(len(b.path), len(a.path)))
	})
	l.routes.Store(&rs)
}

// ServeHTTP routes r to its service: a request no service claims is answered 404 at once.
func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	rs := l.routes.Load()
	if rs == nil {
		http.NotFound(w, r)
		return
	}
	for _, rt := range *rs {
		if !hostMatches(rt.host, host) || !pathMatches(rt.path, r.URL.Path) {
			continue
		}
		if rt.strip && rt.path != "/" {
			r = strip(r, rt.path)
		}
		withoutSession(r)
		rt.to.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprintf(w, "kiln: no service here for host %q and path %q\n", host, r.URL.Path)
}

func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "":
		return true
	case strings.HasPrefix(pattern, "*."):
		rest, ok := strings.CutSuffix(host, pattern[1:])
		return ok && rest != "" && !strings.Contains(rest, ".")
	}
	return pattern == host
}

func pathMatches(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	rest, ok := strings.CutPrefix(path, prefix)
	return ok && (rest == "" || rest[0] == '/')
}

// strip returns r with prefix removed from its path ("/" when nothing is left).
func strip(r *http.Request, prefix string) *http.Request {
	r2 := r.Clone(r.Context())
	r2.URL.Path = cmp.Or(strings.TrimPrefix(r.URL.Path, prefix), "/")
	if r.URL.RawPath != "" {
		r2.URL.RawPath = cmp.Or(strings.TrimPrefix(r.URL.RawPath, prefix), "/")
	}
	return r2
}

// withoutSession removes the dashboard's session cookie from a request to a service:
// browsers send cookies to every port of a host, and that one is the key to the
// daemon, not the service's business.
func withoutSession(r *http.Request) {
	vals := r.Header.Values("Cookie")
	if len(vals) == 0 || !strings.Contains(strings.Join(vals, ";"), api.SessionCookie) {
		return
	}
	r.Header.Del("Cookie")
	for _, v := range vals {
		var kept []string
		for _, part := range strings.Split(v, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name != api.SessionCookie {
				kept = append(kept, strings.TrimSpace(part))
			}
		}
		if len(kept) > 0 {
			r.Header.Add("Cookie", strings.Join(kept, "; "))
		}
	}
}
