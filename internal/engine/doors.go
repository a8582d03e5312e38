package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/frontdoor"
	"github.com/kiln-build/kiln/internal/store"
)

// doorOf is the front door svc asks for: where it listens, which requests are its, and
// how the door checks its servers itself while the daemon is away (the revision's
// health check, failing after its unhealthy threshold).
func doorOf(svc api.Service) door.Service {
	h := svc.Health
	return door.Service{
		Name:   svc.Name,
		Listen: svc.Listen,
		Health: door.Health{Path: h.HTTP, TCP: h.TCP, Interval: h.Interval, Timeout: h.Timeout, Fall: h.UnhealthyThreshold},
	}
}

// Pause holds the new requests of service's front door until Resume (each for up to
// 30 s, then 503), or, with maintenance, answers them 503 with it. It lasts across
// restarts of the daemon and of the door.
func (e *Engine) Pause(ctx context.Context, service, maintenance string) error {
	if err := e.doors.Pause(ctx, service, true, maintenance); err != nil {
		return e.noDoor(service, err)
	}
	if maintenance != "" {
		e.event(service, "", api.EventPaused, "the front door answers 503 (maintenance): %s", maintenance)
	} else {
		e.event(service, "", api.EventPaused, "the front door holds new requests until kiln resume %s", service)
	}
	return nil
}

// Resume lets the requests of service's front door through again.
func (e *Engine) Resume(ctx context.Context, service string) error {
	if err := e.doors.Pause(ctx, service, false, ""); err != nil {
		return e.noDoor(service, err)
	}
	e.event(service, "", api.EventUnpaused, "the front door serves again")
	return nil
}

func (e *Engine) noDoor(service string, err error) error {
	if errors.Is(err, frontdoor.ErrNoDoor) {
		return fmt.Errorf("%w: service %s has no front door (is it deployed? kiln status)", store.ErrNotFound, service)
	}
	return err
}
