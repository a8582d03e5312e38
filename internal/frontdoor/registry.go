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
		if c := s.Canary; c != nil {
			cc := *c
			cc.Upstreams = slices.Clone(c.Upstreams)
			d.canary = &cc
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
// address is closed once the new one is in use). A service keeps one Door for its
// life: the servers in its rotation stay, and so does a pause (see Pause).
func (r *Registry) Ensure(ctx context.Context, settings door.Service) (*Door, error) {
	r.mu.Lock()
	d, created := r.doors[settings.Name], false
	if d == nil {
		d, created = newDoor(r, settings), true
		r.doors[settings.Name] = d
	}
	r.mu.Unlock()
	prev, changed := d.setSettings(settings)
	if !created && !changed {
		return d, nil
	}
	if err := r.push(ctx); err != nil {
		if created {
			r.mu.Lock()
			if r.doors[settings.Name] == d {
				delete(r.doors, settings.Name)
			}
			r.mu.Unlock()
		} else {
			d.restore(prev)
		}
		return nil, err
	}
	return d, nil
}

// Pending checks that the door the service needs can listen, when the service has no
// door of these settings yet, without putting it in use (see Accept); nil, nil when it
// has one.
func (r *Registry) Pending(ctx context.Context, settings door.Service) (*Door, error) {
	settings.Upstreams, settings.Canary = nil, nil
	if old := r.Get(settings.Name); old != nil {
		cur := old.Settings()
		settings.Paused, settings.Maintenance = cur.Paused, cur.Maintenance
		if reflect.DeepEqual(cur, settings) {
			return nil, nil
		}
	}
	if err := r.with(settings).Validate(); err != nil {
		return nil, err
	}
	if old := r.Get(settings.Name); old == nil || old.Listen() != settings.Listen {
		if err := r.plane.Check(ctx, settings.Listen); err != nil {
			return nil, fmt.Errorf("service %s cannot listen on %s: %w", settings.Name, settings.Listen, err)
		}
	}
	return newDoor(r, settings), nil
}

// Accept puts a pending door's settings in use: the service's door takes them, or the
// pending door becomes the service's door when it has none.
func (r *Registry) Accept(ctx context.Context, service string, pending *Door) error {
	_, err := r.Ensure(ctx, pending.Settings())
	return err
}

// ErrNoDoor is the error of Pause for a service without a front door.
var ErrNoDoor = errors.New("the service has no front door")

// Pause holds the new requests of the service's door (each up to door.DefaultPauseTimeout,
// then 503) while paused; with maintenance, the door answers every request 503 with
// it instead. A pause lasts until lifted, across restarts of the daemon and the door.
func (r *Registry) Pause(ctx context.Context, service string, paused bool, maintenance string) error {
	d := r.Get(service)
	if d == nil {
		return fmt.Errorf("%w: %s", ErrNoDoor, service)
	}
	d.mu.Lock()
	prev := d.settings
	d.settings.Paused, d.settings.Maintenance = paused && maintenance == "", maintenance
	d.mu.Unlock()
	if err := r.push(ctx); err != nil {
		d.restore(prev)
		return err
	}
	return nil
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
	if s, ok := r.plane.(interface{ Shutdown() }); ok { // *door.Server, or a plane over one
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
