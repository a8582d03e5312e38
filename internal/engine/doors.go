package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/frontdoor"
	"github.com/kiln-build/kiln/internal/store"
)

// doorOf is the front door svc asks for: where it listens, which requests are its, its
// certificate (the files' PEM, read now), and how the door checks its servers itself
// while the daemon is away (the revision's health check, failing after its unhealthy
// threshold).
func doorOf(svc api.Service) (door.Service, error) {
	h := svc.Health
	d := door.Service{
		Name:   svc.Name,
		Listen: svc.Listen,
		Hosts:  svc.Hosts, Path: svc.Path, StripPath: svc.StripPath,
		DrainTimeout: svc.DrainTimeout, AccessLog: svc.AccessLog,
		Health: door.Health{Path: h.HTTP, TCP: h.TCP, Interval: h.Interval, Timeout: h.Timeout, Fall: h.UnhealthyThreshold},
	}
	if t := svc.TLS; t != nil {
		d.TLS = &door.TLS{ACME: t.ACME, ACMEEmail: t.ACMEEmail, ACMEDirectory: t.ACMEDirectory,
			RedirectHTTP: t.RedirectHTTP, NoRedirect: t.NoRedirect, HSTS: t.HSTS}
		for _, f := range []struct {
			what, path string
			to         *string
		}{{"certificate", t.CertFile, &d.TLS.CertPEM}, {"key", t.KeyFile, &d.TLS.KeyPEM}, {"acme_roots", t.ACMERoots, &d.TLS.ACMERootsPEM}} {
			if f.path == "" {
				continue
			}
			b, err := os.ReadFile(f.path)
			if err != nil {
				return door.Service{}, fmt.Errorf("service %s: reading its TLS %s: %w", svc.Name, f.what, err)
			}
			*f.to = string(b)
		}
	}
	return d, nil
}

// certificateCheck is how often the daemon reads the services' certificate files
// again, and sends the door those that changed.
const certificateCheck = 5 * time.Second

// watchCertificates sends the doors of services with certificate files their new
// content when the files change (a renewal), until ctx ends.
func (e *Engine) watchCertificates(ctx context.Context) {
	tick := time.NewTicker(certificateCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		names, err := e.serviceNames(ctx)
		if err != nil {
			continue
		}
		for _, name := range names {
			r, ok := e.currentRevision(ctx, name)
			if !ok || e.doors.Get(name) == nil {
				continue
			}
			var svc api.Service
			if json.Unmarshal([]byte(r.Spec), &svc) != nil || svc.TLS == nil || svc.TLS.CertFile == "" {
				continue
			}
			if _, err := e.door(ctx, svc); err != nil {
				e.log.Warn("the service's certificate files changed but cannot be served; the door keeps the certificate it has", "service", name, "error", err)
			}
		}
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

// pruneAdopted takes out of the adopted doors' rotations the addresses of no running
// server: servers that died, or were removed, while the daemon was away (the door's
// own checks may not have caught them yet). The rest stay in rotation, serving.
func (e *Engine) pruneAdopted(ctx context.Context) {
	servers, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project})
	if err != nil {
		return // the heal passes take out what is gone
	}
	running := map[string]bool{}
	for _, s := range servers {
		if s.State == driver.StateRunning && s.Address != "" {
			running[s.Service+" "+s.Address] = true
		}
	}
	for name, d := range e.doors.All() {
		var stale []string
		for _, addr := range d.Upstreams() {
			if !running[name+" "+addr] {
				stale = append(stale, addr)
			}
		}
		if len(stale) > 0 {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			d.Update(dctx, nil, stale)
			cancel()
		}
	}
}
