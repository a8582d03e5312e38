package engine

import (
	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/resolve"
	"github.com/kiln-build/kiln/internal/spec"
)

// ServiceFromSpec is a service block as the API takes it, without its image digest
// (see resolve.Service, which it is).
func ServiceFromSpec(s *spec.Service) api.Service { return resolve.Service(s) }

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
