package frontdoor

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/spec"
)

// Door is a service's front door as the daemon wants it: its settings (listen address,
// hosts, path, TLS...) and the servers in its rotation, which the registry configures
// the door process with. It implements rollout.Door and is safe for concurrent use.
type Door struct {
	reg *Registry

	mu       sync.Mutex
	settings door.Service // Upstreams unused: see addrs
	addrs    map[string]bool
	canary   *door.Canary // the canary on trial, nil when none
	// checks holds the health check each server (by address) passed, which the monitor
	// goes on using for it, whatever revision is being rolled out.
	checks map[string]spec.Health
}

func newDoor(reg *Registry, settings door.Service) *Door {
	settings.Upstreams, settings.Canary = nil, nil
	return &Door{reg: reg, settings: settings, addrs: map[string]bool{}, checks: map[string]spec.Health{}}
}

// Listen is the address the door listens on, as the spec gave it.
func (d *Door) Listen() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings.Listen
}

// Settings returns the door's settings (without its rotation).
func (d *Door) Settings() door.Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings
}

// setSettings replaces the door's settings with s, keeping its pause, and returns
// those it had and whether they changed.
func (d *Door) setSettings(s door.Service) (door.Service, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.Upstreams, s.Canary = nil, nil
	s.Paused, s.Maintenance = d.settings.Paused, d.settings.Maintenance
	prev := d.settings
	d.settings = s
	return prev, !reflect.DeepEqual(prev, s)
}

// restore puts back settings that setSettings replaced.
func (d *Door) restore(s door.Service) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.settings = s
}

// Close takes a pending door (one never accepted) out of use: there is nothing to close,
// as a pending door was only checked. An accepted door is removed with Registry.Remove.
func (d *Door) Close() {}

// Update puts the servers at add in rotation and takes those at remove out (of the
// rotation or the canary's), then waits until no request is in flight to a removed
// one (within the service's drain timeout), or ctx ends. A canary's server put in
// rotation leaves the canary.
func (d *Door) Update(ctx context.Context, add, remove []string) error {
	d.mu.Lock()
	for _, a := range add {
		d.addrs[a] = true
	}
	for _, r := range remove {
		delete(d.addrs, r)
		delete(d.checks, r)
	}
	if c := d.canary; c != nil {
		c.Upstreams = slices.DeleteFunc(slices.Clone(c.Upstreams), func(a string) bool {
			return slices.Contains(add, a) || slices.Contains(remove, a)
		})
	}
	d.mu.Unlock()
	if err := d.reg.push(ctx); err != nil {
		return err
	}
	if len(remove) == 0 {
		return nil
	}
	return d.reg.plane.Drain(ctx, d.Settings().Name, remove)
}

// Has reports whether the server at addr is in rotation, or the canary's.
func (d *Door) Has(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addrs[addr] || d.inCanary(addr)
}

// Trial sends weight percent of the requests to the servers at addrs, a canary beside
// the rotation (out of it, if they were in it), with stickiness sticky (see
// door.Canary); a weight of 0 sends them none (the servers stay the canary's, to be
// drained), and nil addrs with weight 0 end the canary. It returns once the door process serves it.
func (d *Door) Trial(ctx context.Context, addrs []string, weight float64, sticky string) error {
	d.mu.Lock()
	if len(addrs) == 0 && weight == 0 {
		d.canary = nil
	} else {
		d.canary = &door.Canary{Upstreams: slices.Sorted(slices.Values(addrs)), Weight: weight, Sticky: sticky}
		for _, a := range addrs {
			delete(d.addrs, a) // the canary's servers are not the rotation's
		}
	}
	d.mu.Unlock()
	return d.reg.push(ctx)
}

// InCanary reports whether the server at addr is the canary's.
func (d *Door) InCanary(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inCanary(addr)
}

// inCanary is InCanary with d.mu held.
func (d *Door) inCanary(addr string) bool {
	return d.canary != nil && slices.Contains(d.canary.Upstreams, addr)
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

// config is the door's part of the door process's configuration.
func (d *Door) config() door.Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.settings
	s.Upstreams = slices.Sorted(maps.Keys(d.addrs))
	if d.canary != nil {
		c := *d.canary
		c.Upstreams = slices.Clone(c.Upstreams)
		s.Canary = &c
	}
	return s
}
