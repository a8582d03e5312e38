package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/driver"
)

// servicePlane is the front doors on a runtime that carries services' traffic itself
// (driver.ServiceHost: a Kubernetes Service per service): the daemon's own door serves
// as inline, and every configuration it is given is told to the runtime too, each
// service's rotation as it changes, so that the runtime routes to exactly the servers
// kiln put in rotation. A configuration older than one told already is not told (the
// door takes the newest: pushes are not serialized).
type servicePlane struct {
	*door.Server
	host    driver.ServiceHost
	project string
	log     *slog.Logger

	mu   sync.Mutex
	gen  int64
	told map[string]string // what each service was told last (port and rotation), by name
}

func newServicePlane(s *door.Server, host driver.ServiceHost, project string, log *slog.Logger) *servicePlane {
	return &servicePlane{Server: s, host: host, project: project, log: log, told: map[string]string{}}
}

// Apply makes the daemon's door serve cfg, then tells the runtime each changed
// rotation and removes what carries a service cfg no longer has. A service listening
// on port 0 has no port for the runtime to carry.
func (p *servicePlane) Apply(ctx context.Context, cfg door.Config) error {
	if err := p.Server.Apply(ctx, cfg); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cfg.Generation < p.gen {
		return nil // a newer one was told
	}
	p.gen = cfg.Generation
	var errs []error
	now := map[string]bool{}
	for _, s := range cfg.Services {
		_, ps, err := net.SplitHostPort(s.Listen)
		port, _ := strconv.Atoi(ps)
		if err != nil || port <= 0 {
			continue
		}
		now[s.Name] = true
		key := ps + " " + strings.Join(s.Upstreams, ",")
		if p.told[s.Name] == key {
			continue
		}
		if err := p.host.SetRotation(ctx, p.project, s.Name, port, s.Upstreams); err != nil {
			errs = append(errs, err)
			delete(p.told, s.Name) // told again next time
			continue
		}
		p.told[s.Name] = key
	}
	for name := range p.told {
		if now[name] {
			continue
		}
		if err := p.host.RemoveService(ctx, p.project, name); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(p.told, name)
	}
	return errors.Join(errs...)
}

// Propagation is how long a server that left a service's rotation is given to leave
// the runtime's routing too (kube-proxy's rules on every node follow the EndpointSlice
// within about a second) before Drain returns and it is stopped.
const Propagation = time.Second

// Drain waits for the requests in flight through the daemon's door to the servers at
// addrs, and for the runtime to stop routing to them (Propagation).
func (p *servicePlane) Drain(ctx context.Context, service string, addrs []string) error {
	err := p.Server.Drain(ctx, service, addrs)
	p.mu.Lock()
	_, carried := p.told[service]
	p.mu.Unlock()
	if carried && len(addrs) > 0 {
		t := time.NewTimer(Propagation)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return err
}
