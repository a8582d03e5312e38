package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/frontdoor"
	"github.com/kiln-build/kiln/internal/health"
	"github.com/kiln-build/kiln/internal/rollout"
)

// proveCheck runs t's health check against every server in rotation that has not
// passed it (servers kept from an earlier revision passed that revision's check): a
// new health check, like a new image, is proven on servers before a revision is
// deployed. A check the servers fail fails the rollout, which is then rolled back like
// any other; the servers' own check stays in force meanwhile.
func (e *Engine) proveCheck(ctx context.Context, d *frontdoor.Door, t rollout.Target) error {
	h := t.Health
	if e.readier() != nil {
		return nil // the check is the runtime's, part of each server's spec: new servers run a new one
	}
	var todo []string
	for _, addr := range d.Upstreams() {
		if passed, ok := d.Check(addr); !ok || passed != h {
			todo = append(todo, addr)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	deadline := t.Settings.ProgressDeadline
	if deadline <= 0 {
		deadline = time.Minute
	}
	pctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	check := health.Check{HTTPPath: h.HTTP, TCP: h.TCP, Timeout: h.Timeout, FailAfter: max(h.FailureThreshold, 1)}
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, addr := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := health.WaitHealthy(pctx, addr, check, h.Interval, 0, 0, h.HealthyThreshold); err != nil {
				errs[i] = fmt.Errorf("server at %s: %w", addr, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("the new health check fails on the servers in rotation: %w", err)
	}
	for _, addr := range todo {
		d.Passed(addr, h)
	}
	e.event(t.Service, "", "gated", "the health check of revision %d passes on %d servers in rotation", t.Revision, len(todo))
	return nil
}
