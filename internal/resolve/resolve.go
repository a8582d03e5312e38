package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
)

// Baker bakes images; *bake.Baker is one. Bake returns one result per image.
type Baker interface {
	Bake(ctx context.Context, images []*spec.Image) ([]*bake.Result, error)
}

// Finder finds a stored image by digest (or NAME@DIGEST); *imagestore.Store is one.
type Finder interface {
	Find(ref string) (imagestore.Entry, error)
}

// ErrNoBaker means Services was given no baker for services whose images must be baked.
var ErrNoBaker = errors.New("the services' images must be baked, and no baker was given")

// Images returns the images services run that must be baked, with the images they are
// based on, in the spec's order; none when every service runs an image by digest.
func Images(cfg *spec.Config, services []*spec.Service) ([]*spec.Image, error) {
	var names []string
	for _, s := range services {
		if s.Image.Image != "" {
			names = append(names, s.Image.Image)
		}
	}
	if len(names) == 0 {
		return nil, nil // bake.Select(cfg, nil) would be every image
	}
	return bake.Select(cfg, names)
}

// Services bakes the images services run (Images) with baker, which may be nil when
// there are none, and returns the services as the daemon takes them: each with its
// image's digest and name (an image run by digest is named as the store names it),
// its secrets as templates still to resolve. It also returns the bake's results. A
// bake's error is returned as the baker gave it.
func Services(ctx context.Context, cfg *spec.Config, services []*spec.Service, baker Baker, store Finder) ([]api.Service, []*bake.Result, error) {
	images, err := Images(cfg, services)
	if err != nil {
		return nil, nil, err
	}
	var results []*bake.Result
	if len(images) > 0 {
		if baker == nil {
			return nil, nil, ErrNoBaker
		}
		if results, err = baker.Bake(ctx, images); err != nil {
			return nil, nil, err
		}
	}
	baked := map[string]*bake.Result{}
	for _, r := range results {
		baked[r.Name] = r
	}
	out := make([]api.Service, 0, len(services))
	for _, s := range services {
		svc := Service(s)
		if r := baked[s.Image.Image]; r != nil {
			svc.Image, svc.ImageName = r.Digest.String(), r.Name
		} else {
			e, err := store.Find(s.Image.Digest)
			if err != nil {
				return nil, nil, fmt.Errorf("service %s: image %s: %w", s.Name, s.Image.Digest, err)
			}
			svc.Image, svc.ImageName = e.Digest.String(), e.Name
		}
		out = append(out, svc)
	}
	return out, results, nil
}

// Service is a service block as the API takes it, without its image (Services adds
// it). The front door's settings and the canary's are written so that a service that
// uses none of them is the api.Service it was before they existed (the zero values, a
// nil Canary), and so that equal routes are equal values: hosts sorted, "/" as "",
// StripPath only with a path, the default drain as 0 and none as api.NoDrain.
func Service(s *spec.Service) api.Service {
	out := api.Service{
		Name: s.Name, Replicas: s.Replicas, Port: s.Port, Listen: s.Listen, Drift: s.Drift,
		Command: s.Command, Args: s.Args, Env: s.Env, Writable: s.Writable, User: s.User,
		Init: s.Init, StopSignal: s.StopSignal, StopTimeout: s.StopTimeout,
		SecretEnv: templates(s.SecretEnv), SecretFiles: templates(s.SecretFiles),
		Resources: api.Resources{CPUs: s.Resources.CPUs, MemoryBytes: s.Resources.MemoryBytes, PIDs: s.Resources.PIDs},
		Health: api.Health{HTTP: s.Health.HTTP, TCP: s.Health.TCP, Interval: s.Health.Interval, Timeout: s.Health.Timeout,
			StartPeriod: s.Health.StartPeriod, HealthyThreshold: s.Health.HealthyThreshold, UnhealthyThreshold: s.Health.UnhealthyThreshold,
			FailureThreshold: s.Health.FailureThreshold},
		Update: api.Update{Strategy: s.Update.Strategy, MaxSurge: s.Update.MaxSurge, MaxUnavailable: s.Update.MaxUnavailable,
			MinHealthy: s.Update.MinHealthy, ProgressDeadline: s.Update.ProgressDeadline, AutoRollback: s.Update.AutoRollback, KeepOld: s.Update.KeepOld,
			Canary: apiCanary(s.Update.Canary)},
		AccessLog: s.AccessLog,
	}
	if len(s.Hosts) > 0 {
		out.Hosts = slices.Sorted(slices.Values(s.Hosts))
	}
	if s.Path != "/" {
		out.Path, out.StripPath = s.Path, s.StripPath
	}
	switch s.DrainTimeout {
	case spec.DefaultDrainTimeout:
	case 0:
		out.DrainTimeout = api.NoDrain
	default:
		out.DrainTimeout = s.DrainTimeout
	}
	if t := s.TLS; t != nil {
		out.TLS = &api.TLS{CertFile: t.CertFile, KeyFile: t.KeyFile, ACME: t.ACME, ACMEEmail: t.ACMEEmail,
			ACMEDirectory: t.ACMEDirectory, ACMERoots: t.ACMERoots, RedirectHTTP: t.RedirectHTTP, NoRedirect: t.NoRedirect, HSTS: t.HSTS}
	}
	return out
}

// SpecService is svc as the spec's rules see it (spec.ValidateService,
// spec.RouteConflicts): the inverse of Service for the settings they check, with the
// API's zero values read as the spec's defaults. Its DeclRange is zero, so messages
// name the service without a place.
func SpecService(svc api.Service) *spec.Service {
	s := &spec.Service{Name: svc.Name, Replicas: svc.Replicas, Port: svc.Port, Listen: svc.Listen, Drift: svc.Drift,
		Health: spec.Health{HTTP: svc.Health.HTTP, TCP: svc.Health.TCP, Interval: svc.Health.Interval, Timeout: svc.Health.Timeout,
			StartPeriod: svc.Health.StartPeriod, HealthyThreshold: svc.Health.HealthyThreshold,
			UnhealthyThreshold: svc.Health.UnhealthyThreshold, FailureThreshold: svc.Health.FailureThreshold},
		Update: spec.Update{Strategy: svc.Update.Strategy, MaxSurge: svc.Update.MaxSurge, MaxUnavailable: svc.Update.MaxUnavailable,
			MinHealthy: svc.Update.MinHealthy, ProgressDeadline: svc.Update.ProgressDeadline, AutoRollback: svc.Update.AutoRollback,
			KeepOld: svc.Update.KeepOld, Canary: specCanary(svc.Update.Canary)},
		Hosts: svc.Hosts, Path: cmp.Or(svc.Path, "/"), StripPath: svc.StripPath, DrainTimeout: svc.Drain(), AccessLog: svc.AccessLog,
	}
	if t := svc.TLS; t != nil {
		s.TLS = &spec.TLS{CertFile: t.CertFile, KeyFile: t.KeyFile, ACME: t.ACME, ACMEEmail: t.ACMEEmail,
			ACMEDirectory: t.ACMEDirectory, ACMERoots: t.ACMERoots, RedirectHTTP: t.RedirectHTTP, NoRedirect: t.NoRedirect, HSTS: t.HSTS}
	}
	return s
}

// apiCanary is c as the API takes it, a copy sharing nothing with it; nil for nil.
func apiCanary(c *spec.Canary) *api.Canary {
	if c == nil {
		return nil
	}
	out := &api.Canary{Sticky: c.Sticky}
	for _, st := range c.Steps {
		out.Steps = append(out.Steps, api.CanaryStep{Weight: st.Weight, Duration: st.Duration, Pause: st.Pause})
	}
	a := c.Analysis
	out.Analysis = api.Analysis{Interval: a.Interval, MinRequests: a.MinRequests, MaxErrorRatio: a.MaxErrorRatio,
		MaxErrorRatioOverStable: a.MaxErrorRatioOverStable, MaxP50: a.MaxP50, MaxP99: a.MaxP99,
		MaxP50OverStable: a.MaxP50OverStable, MaxP99OverStable: a.MaxP99OverStable, Prometheus: a.Prometheus}
	for _, q := range a.Queries {
		out.Analysis.Queries = append(out.Analysis.Queries, api.Query{Name: q.Name, Query: q.Query, Max: clone(q.Max), Min: clone(q.Min)})
	}
	return out
}

// specCanary is the inverse of apiCanary.
func specCanary(c *api.Canary) *spec.Canary {
	if c == nil {
		return nil
	}
	out := &spec.Canary{Sticky: c.Sticky}
	for _, st := range c.Steps {
		out.Steps = append(out.Steps, spec.CanaryStep{Weight: st.Weight, Duration: st.Duration, Pause: st.Pause})
	}
	a := c.Analysis
	out.Analysis = spec.Analysis{Interval: a.Interval, MinRequests: a.MinRequests, MaxErrorRatio: a.MaxErrorRatio,
		MaxErrorRatioOverStable: a.MaxErrorRatioOverStable, MaxP50: a.MaxP50, MaxP99: a.MaxP99,
		MaxP50OverStable: a.MaxP50OverStable, MaxP99OverStable: a.MaxP99OverStable, Prometheus: a.Prometheus}
	for _, q := range a.Queries {
		out.Analysis.Queries = append(out.Analysis.Queries, spec.Query{Name: q.Name, Query: q.Query, Max: clone(q.Max), Min: clone(q.Min)})
	}
	return out
}

// clone is a pointer to a copy of *p; nil for nil.
func clone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func templates(m map[string]string) map[string]api.SecretValue {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]api.SecretValue, len(m))
	for k, t := range m {
		out[k] = api.SecretValue{Template: t}
	}
	return out
}
