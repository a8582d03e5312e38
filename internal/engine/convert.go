package engine

import (
	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/spec"
)

// ServiceFromSpec is a service block as the API takes it, without its image digest
// (the caller bakes or resolves it).
func ServiceFromSpec(s *spec.Service) api.Service {
	return api.Service{
		Name: s.Name, Replicas: s.Replicas, Port: s.Port, Listen: s.Listen, Drift: s.Drift,
		Command: s.Command, Args: s.Args, Env: s.Env, Writable: s.Writable, User: s.User,
		Init: s.Init, StopSignal: s.StopSignal, StopTimeout: s.StopTimeout,
		SecretEnv: templates(s.SecretEnv), SecretFiles: templates(s.SecretFiles),
		Resources: api.Resources{CPUs: s.Resources.CPUs, MemoryBytes: s.Resources.MemoryBytes, PIDs: s.Resources.PIDs},
		Health: api.Health{HTTP: s.Health.HTTP, TCP: s.Health.TCP, Interval: s.Health.Interval, Timeout: s.Health.Timeout,
			StartPeriod: s.Health.StartPeriod, HealthyThreshold: s.Health.HealthyThreshold, UnhealthyThreshold: s.Health.UnhealthyThreshold,
			FailureThreshold: s.Health.FailureThreshold},
		Update: api.Update{Strategy: s.Update.Strategy, MaxSurge: s.Update.MaxSurge, MaxUnavailable: s.Update.MaxUnavailable,
			MinHealthy: s.Update.MinHealthy, ProgressDeadline: s.Update.ProgressDeadline, AutoRollback: s.Update.AutoRollback, KeepOld: s.Update.KeepOld},
	}
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

// SecretsFromSpec are the spec's secret blocks as the API takes them.
func SecretsFromSpec(cfg *spec.Config) []api.SecretSource {
	var out []api.SecretSource
	for _, s := range cfg.Secrets {
		out = append(out, api.SecretSource{Name: s.Name, File: s.File, Env: s.Env, Command: s.Command, Dir: s.Dir})
	}
	return out
}

// PipelineFromSpec is a pipeline block as the API takes it; specPath is the spec file's
// path relative to the repository's root.
func PipelineFromSpec(p *spec.Pipeline, specPath string) api.Pipeline {
	out := api.Pipeline{Name: p.Name, Repo: p.Repo, Branch: p.Branch, Poll: p.Poll, Services: p.Services,
		Promote: p.Promote, WebhookSecret: p.WebhookSecret, TestTimeout: p.TestTimeout, SpecPath: specPath}
	// The caller adds Vars, Sensitive and Secrets: they are the applied spec's.
	for _, c := range p.Checks {
		out.Checks = append(out.Checks, api.Check{Name: c.Name, Path: c.Path, Status: c.Status, Body: c.Body, Command: c.Command})
	}
	return out
}
