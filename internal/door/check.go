package door

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/health"
)

// check runs the door's own health checks of the service's upstreams until the service
// is closed: every Health.Interval, each upstream is probed; one failing Fall checks in
// a row leaves rotation, and comes back with its first passed check. The daemon does
// the same, and more (it replaces failed servers); these keep the rotation sound while
// it is away.
func (s *service) check() {
	for {
		iv := s.settings().Health.Interval
		var tick <-chan time.Time
		if iv > 0 {
			t := time.NewTimer(iv)
			tick = t.C
			defer t.Stop()
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
			continue
		case <-tick:
		}
		s.probeAll()
	}
}

// probeAll probes every configured upstream once, at the same time, and updates the
// rotation.
func (s *service) probeAll() {
	cur := s.cfg.Load()
	sc := *cur
	c := health.Check{HTTPPath: sc.Health.Path, TCP: sc.Health.TCP || sc.Health.Path == "",
		Timeout: cmp.Or(sc.Health.Timeout, defaultCheckTimeout)}
	addrs := sc.checked()
	results := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(s.ctx, c.Timeout)
			defer cancel()
			results[i] = health.Probe(ctx, a, c)
		})
	}
	wg.Wait()
	if s.ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Load() != cur {
		return // reconfigured meanwhile: these results may be of servers gone
	}
	changed := false
	for i, a := range addrs {
		was := s.down[a] >= s.fall()
		if results[i] == nil {
			delete(s.down, a)
		} else {
			s.down[a]++
		}
		now := s.down[a] >= s.fall()
		if was != now {
			changed = true
			if now {
				s.log.Warn("a server failed the door's health checks: out of rotation until it passes one", "server", a, "error", results[i])
			} else {
				s.log.Info("a server passed the door's health check again: back in rotation", "server", a)
			}
		}
	}
	if changed {
		s.rotate()
	}
}
