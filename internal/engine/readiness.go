package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/health"
	"github.com/kiln-build/kiln/internal/rollout"
)

// On a runtime that checks its servers' health itself (driver.Capabilities.Readiness:
// a Kubernetes pod's readiness probe, where the daemon may not reach the pods), the
// service's health check is the runtime's (serverSpec gives it as the spec's Probe),
// and the rollout gate and the monitor read what the runtime reports.

// readyPoll bounds how often the gate asks the runtime whether a server is ready.
const readyPoll = 250 * time.Millisecond

// readier is the driver's Readier when it claims Readiness, else nil.
func (e *Engine) readier() driver.Readier {
	if r, ok := e.opts.Driver.(driver.Readier); ok && e.caps.Readiness {
		return r
	}
	return nil
}

// waitReady is the health gate on such a runtime: it returns once the runtime has
// reported s ready for min_healthy without a break, and fails when ctx ends (the
// progress deadline) with the runtime's last word on why s is not ready.
func (e *Engine) waitReady(ctx context.Context, r driver.Readier, t rollout.Target, s driver.Server) error {
	var readySince time.Time
	var last error
	for {
		err := r.Ready(ctx, s.ID)
		switch {
		case errors.Is(err, driver.ErrNotFound):
			return fmt.Errorf("server %s is gone: %w", s.ID, err)
		case err != nil:
			readySince, last = time.Time{}, err
		case readySince.IsZero():
			readySince = e.clock.Now()
			fallthrough
		default:
			if e.clock.Since(readySince) >= t.Settings.MinHealthy {
				if d := e.doors.Get(t.Service); d != nil {
					d.Passed(s.Address, t.Health)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("not ready: %w", last)
		case <-e.clock.After(min(readyPoll, max(t.Health.Interval, 10*time.Millisecond))):
		}
	}
}

// runtimeProbe is the monitor's probe on such a runtime: a server in rotation is asked
// of the runtime, by the address it was admitted at; nil (the health package's own
// probe) elsewhere.
func (e *Engine) runtimeProbe() func(ctx context.Context, addr string, c health.Check) error {
	r := e.readier()
	if r == nil {
		return nil
	}
	return func(ctx context.Context, addr string, _ health.Check) error {
		s, ok := e.exec.AdmittedAt(addr)
		if !ok {
			return fmt.Errorf("no server admitted at %s", addr)
		}
		return r.Ready(ctx, s.ID)
	}
}

// doorOf is the front door svc asks for (see doorOf); on a runtime that checks its
// servers itself the door does not probe them (it may not reach them either): the
// daemon's monitor takes a server that is not ready out of rotation.
func (e *Engine) doorOf(svc api.Service) (door.Service, error) {
	d, err := doorOf(svc)
	if e.readier() != nil {
		d.Health.Interval = 0
	}
	return d, err
}
