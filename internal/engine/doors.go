package engine

import (
	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
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
