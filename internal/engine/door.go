package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/proxy"
	"github.com/kiln-build/kiln/internal/spec"
)

// door is a service's front door: a proxy on the service's listen address and the set
// of servers in rotation. It implements rollout.Door.
type door struct {
	listen string
	proxy  *proxy.Proxy
	stop   context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	addrs map[string]bool
	// checks holds the health check each server (by address) passed, which the monitor
	// goes on using for it, whatever revision is being rolled out.
	checks map[string]spec.Health
}

// openDoor listens on addr and serves the proxy until ctx ends or close is called.
func openDoor(ctx context.Context, service, addr string, mw func(http.Handler) http.Handler) (*door, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("service %s cannot listen on %s: the address is already in use by another program (change `listen` in the spec, or stop that program)", service, addr)
		}
		return nil, fmt.Errorf("service %s: listening on %s: %w", service, addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &door{listen: addr, proxy: proxy.New(service, proxy.Options{Middleware: mw}), stop: cancel, done: make(chan struct{}), addrs: map[string]bool{}, checks: map[string]spec.Health{}}
	go func() {
		defer close(d.done)
		d.proxy.Serve(ctx, ln)
	}()
	return d, nil
}

// close stops the proxy, finishing requests in flight.
func (d *door) close() {
	d.stop()
	<-d.done
}

func (d *door) Update(ctx context.Context, add, remove []string) error {
	d.mu.Lock()
	for _, a := range add {
		d.addrs[a] = true
	}
	for _, r := range remove {
		delete(d.addrs, r)
		delete(d.checks, r)
	}
	d.proxy.SetUpstreams(slices.Sorted(maps.Keys(d.addrs)))
	d.mu.Unlock()
	for _, r := range remove {
		if err := d.proxy.WaitIdle(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func (d *door) Has(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addrs[addr]
}

// passed records that the server at addr passed check.
func (d *door) passed(addr string, check spec.Health) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.checks[addr] = check
}

// check returns the health check the server at addr passed, if known.
func (d *door) check(addr string) (spec.Health, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.checks[addr]
	return h, ok
}

func (d *door) upstreams() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.addrs))
}

// withoutSession removes the dashboard's session cookie from a request to a service:
// browsers send cookies to every port of a host, and that one is the key to the
// daemon, not the service's business.
func withoutSession(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if vals := r.Header.Values("Cookie"); len(vals) > 0 && strings.Contains(strings.Join(vals, ";"), api.SessionCookie) {
			r = r.Clone(r.Context())
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
		h.ServeHTTP(w, r)
	})
}
