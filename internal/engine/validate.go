package engine

import (
	"errors"
	"fmt"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/resolve"
	"github.com/kiln-build/kiln/internal/spec"
)

// validateService refuses a service an API client sent whose values break the spec's
// rules (spec.ValidateService): one error a problem, each "service NAME: " and what
// kiln validate says of the same value in a spec. nil when valid.
func validateService(svc api.Service) error {
	var errs []error
	for _, p := range spec.ValidateService(resolve.SpecService(svc)) {
		errs = append(errs, fmt.Errorf("service %s: %w", svc.Name, p))
	}
	return errors.Join(errs...)
}

// routeConflicts refuses services whose front doors cannot be served together with
// those the daemon keeps running (spec.RouteConflicts): applied replaces the current
// revision of a service of the same name. Only conflicts that involve an applied
// service are errors: the others were there before.
func routeConflicts(current, applied []api.Service) error {
	byName := map[string]bool{}
	var all []*spec.Service
	for _, svc := range applied {
		byName[svc.Name] = true
	}
	for _, svc := range current {
		if !byName[svc.Name] {
			all = append(all, resolve.SpecService(svc))
		}
	}
	for _, svc := range applied {
		all = append(all, resolve.SpecService(svc))
	}
	var errs []error
	for _, c := range spec.RouteConflicts(all) {
		if byName[c.Service] || byName[c.Other] {
			errs = append(errs, fmt.Errorf("service %s: %w", c.Service, c))
		}
	}
	return errors.Join(errs...)
}
