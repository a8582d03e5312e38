package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/kiln-build/kiln/internal/door"
)

// Registry holds the front door of every service and configures the door process (a
// door.Plane: in this process, or the door's own) with all of them on every change.
// Its lock guards only the map; the plane is called outside it, so a door draining a
// long request (a WebSocket, up to its drain timeout) never holds up another service's
// door, the monitor or a status read.
type Registry struct {
	plane door.Plane

	mu    sync.Mutex
	doors map[string]*Door
	gen   int64
}

// NewRegistry returns a registry of no door that configures plane.
func NewRegistry(plane door.Plane) *Registry {
	return &Registry{plane: plane, doors: map[string]*Door{}}
}

// Plane is what the registry configures.
func (r *Registry) Plane() door.Plane { return r.plane }

// Adopt takes the doors of cfg, the configuration the door process serves (found
// running when the daemon starts), as the registry's own: their servers stay in
// rotation, and the next configuration follows cfg's generation. Called before any
// door is opened.
func (r *Registry) Adopt(cfg door.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen = max(r.gen, cfg.Generation)
	for _, s := range cfg.Services {
		d := newDoor(r, s)
		for _, a := range s.Upstreams {
			d.addrs[a] = true
		}
		r.doors[s.Name] = d
	}
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

// Ensure returns the service's door with settings (its Upstreams ignored), configuring
// the door process when the service had none or had other settings (a door on another
// address is closed once the new one is in use). The servers in rotation stay.
func (r *Registry) Ensure(ctx context.Context, settings door.Service) (*Door, error) {
	settings.Upstreams = nil
	r.mu.Lock()
	old := r.doors[settings.Name]
	if old != nil && reflect.DeepEqual(old.settings, settings) {
		r.mu.Unlock()
		return old, nil
	}
	d := newDoor(r, settings)
	if old != nil {
		d.addrs, d.checks = old.rotation(), old.checksCopy()
	}
	r.doors[settings.Name] = d
	r.mu.Unlock()
	if err := r.push(ctx); err != nil {
		r.mu.Lock()
		if r.doors[settings.Name] == d {
			if old != nil {
				r.doors[settings.Name] = old
			} else {
				delete(r.doors, settings.Name)
			}
		}
		r.mu.Unlock()
		return nil, err
	}
	return d, nil
}

// Pending checks that the door the service needs can listen, when the service has no
// door there yet, without putting it in use (see Accept); nil, nil when it has one.
func (r *Registry) Pending(ctx context.Context, settings door.Service) (*Door, error) {
	settings.Upstreams = nil
	r.mu.Lock()
	old := r.doors[settings.Name]
	r.mu.Unlock()
	if old != nil && reflect.DeepEqual(old.settings, settings) {
		return nil, nil
	}
	if err := r.with(settings).Validate(); err != nil {
		return nil, err
	}
	if old == nil || old.settings.Listen != settings.Listen {
		if err := r.plane.Check(ctx, settings.Listen); err != nil {
			return nil, fmt.Errorf("service %s cannot listen on %s: %w", settings.Name, settings.Listen, err)
		}
	}
	return newDoor(r, settings), nil
}

// Accept puts a pending door in use, keeping the servers in rotation of the door it
// replaces. If the service got a door of the same settings meanwhile, that one stays.
func (r *Registry) Accept(ctx context.Context, service string, d *Door) error {
	r.mu.Lock()
	old := r.doors[service]
	if old != nil && reflect.DeepEqual(old.settings, d.settings) {
		r.mu.Unlock()
		return nil
	}
	if old != nil {
		d.addrs, d.checks = old.rotation(), old.checksCopy()
	}
	r.doors[service] = d
	r.mu.Unlock()
	return r.push(ctx)
}

// Remove takes the service's door out of use and returns it, nil if it had none; the
// door process stops listening for it once the requests in flight have finished.
func (r *Registry) Remove(ctx context.Context, service string) (*Door, error) {
	r.mu.Lock()
	d := r.doors[service]
	delete(r.doors, service)
	r.mu.Unlock()
	if d == nil {
		return nil, nil
	}
	return d, r.push(ctx)
}

// CloseAll stops a door served in this process (the daemon's own); a door process is
// left serving, for the next daemon to adopt.
func (r *Registry) CloseAll() {
	if s, ok := r.plane.(*door.Server); ok {
		s.Shutdown()
	}
}

// Stats returns the door process's counters and rotations, by service.
func (r *Registry) Stats(ctx context.Context) (map[string]door.ServiceStats, error) {
	return r.plane.Stats(ctx)
}

// push sends the configuration of every door to the plane, under a new generation.
// Pushes are not serialized (one may wait for a moved door to drain): one found stale
// was overtaken by a newer configuration, which holds its change too.
func (r *Registry) push(ctx context.Context) error {
	r.mu.Lock()
	r.gen++
	cfg := door.Config{Generation: r.gen}
	for _, d := range r.doors {
		cfg.Services = append(cfg.Services, d.config())
	}
	r.mu.Unlock()
	slices.SortFunc(cfg.Services, func(a, b door.Service) int { return strings.Compare(a.Name, b.Name) })
	if err := r.plane.Apply(ctx, cfg); err != nil && !errors.Is(err, door.ErrStale) {
		return err
	}
	return nil
}

// with is the configuration of every door, with the service of settings set to it.
func (r *Registry) with(settings door.Service) door.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cfg door.Config
	for name, d := range r.doors {
		if name != settings.Name {
			cfg.Services = append(cfg.Services, d.config())
		}
	}
	cfg.Services = append(cfg.Services, settings)
	return cfg
}
