package engine

import (
	"errors"
	"fmt"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/spec"
)

// validateService refuses a service an API client sent whose values break the spec's
// rules (spec.ValidateService): one error a problem, each "service NAME: " and what
// kiln validate says of the same value in a spec. nil when valid.
func validateService(svc api.Service) error {
	s := spec.Service{Name: svc.Name, Replicas: svc.Replicas, Port: svc.Port, Listen: svc.Listen, Drift: svc.Drift,
		Health: spec.Health{HTTP: svc.Health.HTTP, TCP: svc.Health.TCP, Interval: svc.Health.Interval, Timeout: svc.Health.Timeout,
			StartPeriod: svc.Health.StartPeriod, HealthyThreshold: svc.Health.HealthyThreshold,
			UnhealthyThreshold: svc.Health.UnhealthyThreshold, FailureThreshold: svc.Health.FailureThreshold},
		Update: spec.Update{Strategy: svc.Update.Strategy, MaxSurge: svc.Update.MaxSurge, MaxUnavailable: svc.Update.MaxUnavailable,
			MinHealthy: svc.Update.MinHealthy, ProgressDeadline: svc.Update.ProgressDeadline, AutoRollback: svc.Update.AutoRollback,
			KeepOld: svc.Update.KeepOld}}
	var errs []error
	for _, p := range spec.ValidateService(&s) {
		errs = append(errs, fmt.Errorf("service %s: %w", svc.Name, p))
	}
	return errors.Join(errs...)
}
