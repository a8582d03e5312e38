package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"

	"github.com/kiln-build/kiln/internal/proxy"
	"github.com/kiln-build/kiln/internal/spec"
)

// Door is a service's front door: a proxy on the service's listen address and the set
// of servers in rotation. It implements rollout.Door and is safe for concurrent use.
type Door struct {
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

// Open listens on addr and serves the proxy of service until ctx ends or Close is
// called. The address in use by another program is an error that says so.
func Open(ctx context.Context, service, addr string, mw func(http.Handler) http.Handler) (*Door, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("service %s cannot listen on %s: the address is already in use by another program (change `listen` in the spec, or stop that program)", service, addr)
		}
		return nil, fmt.Errorf("service %s: listening on %s: %w", service, addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &Door{listen: addr, proxy: proxy.New(service, proxy.Options{Middleware: mw}), stop: cancel, done: make(chan struct{}),
		addrs: map[string]bool{}, checks: map[string]spec.Health{}}
	go func() {
		defer close(d.done)
		d.proxy.Serve(ctx, ln)
	}()
	return d, nil
}

// Listen is the address the door listens on, as the spec gave it.
func (d *Door) Listen() string { return d.listen }

// Close stops the proxy and blocks until the requests in flight have finished (the
// proxy's drain bound). It is idempotent.
func (d *Door) Close() {
	d.stop()
	<-d.done
}

// Update puts the servers at add in rotation and takes those at remove out, then
// waits until no request is in flight to a removed one, or ctx ends.
func (d *Door) Update(ctx context.Context, add, remove []string) error {
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

// Has reports whether the server at addr is in rotation.
func (d *Door) Has(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addrs[addr]
}

// Passed records that the server at addr passed check.
func (d *Door) Passed(addr string, check spec.Health) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.checks[addr] = check
}

// Check returns the health check the server at addr passed, if known.
func (d *Door) Check(addr string) (spec.Health, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.checks[addr]
	return h, ok
}

// Upstreams returns the addresses in rotation, sorted.
func (d *Door) Upstreams() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.addrs))
}
