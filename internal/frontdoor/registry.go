package frontdoor

import (
	"context"
	"net/http"
	"sync"
)

// Registry holds the front door of every service. Its lock guards only the map: a door
// is opened (a listen, which does not block) under it but always closed outside it, so
// a door draining a long request (a WebSocket, up to the proxy's bound) never holds up
// another service's door, the monitor or a status read.
type Registry struct {
	// Middleware wraps the handler of each service's door (metrics, traffic, the
	// session cookie filter); nil for none.
	Middleware func(service string) func(http.Handler) http.Handler

	mu    sync.Mutex
	doors map[string]*Door
}

// NewRegistry returns an empty registry whose doors are wrapped by mw (nil for none).
func NewRegistry(mw func(service string) func(http.Handler) http.Handler) *Registry {
	return &Registry{Middleware: mw, doors: map[string]*Door{}}
}

// Get returns the service's door, nil if it has none.
func (r *Registry) Get(service string) *Door {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.doors[service]
}

// All returns every door by service: a copy, safe to range over without the lock.
func (r *Registry) All() map[string]*Door {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*Door, len(r.doors))
	for k, v := range r.doors {
		out[k] = v
	}
	return out
}

// Ensure returns the service's door on listen, opening it under ctx (which it serves
// until ctx ends) when the service has none there; a door the service had on another
// address is closed, after the new one is in use.
func (r *Registry) Ensure(ctx context.Context, service, listen string) (*Door, error) {
	r.mu.Lock()
	if d := r.doors[service]; d != nil && d.listen == listen {
		r.mu.Unlock()
		return d, nil
	}
	d, err := r.open(ctx, service, listen)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	old := r.doors[service]
	r.doors[service] = d
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return d, nil
}

// Pending opens the door the service needs when it has none on listen, without putting
// it in use (see Accept); nil, nil when it has one. The caller closes a pending door
// it does not accept.
func (r *Registry) Pending(ctx context.Context, service, listen string) (*Door, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.doors[service]; d != nil && d.listen == listen {
		return nil, nil
	}
	return r.open(ctx, service, listen)
}

// Accept puts a pending door in use, closing the one it replaces. If the service got
// a door on the same address meanwhile, that one stays and d is closed.
func (r *Registry) Accept(service string, d *Door) {
	r.mu.Lock()
	old := r.doors[service]
	if old != nil && old.listen == d.listen {
		r.mu.Unlock()
		d.Close()
		return
	}
	r.doors[service] = d
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// Remove takes the service's door out of the registry and returns it, nil if it had
// none; the caller closes it.
func (r *Registry) Remove(service string) *Door {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.doors[service]
	delete(r.doors, service)
	return d
}

// CloseAll closes every door, outside the lock, and empties the registry.
func (r *Registry) CloseAll() {
	r.mu.Lock()
	doors := r.doors
	r.doors = map[string]*Door{}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range doors {
		wg.Go(d.Close)
	}
	wg.Wait()
}

func (r *Registry) open(ctx context.Context, service, listen string) (*Door, error) {
	var mw func(http.Handler) http.Handler
	if r.Middleware != nil {
		mw = r.Middleware(service)
	}
	return Open(ctx, service, listen, mw)
}
