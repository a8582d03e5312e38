package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/secret"
	"github.com/kiln-build/kiln/internal/spec"
)

// resolveSecrets returns services with every SecretValue template resolved: each
// secret it names is read from its source in sources (once per call), the value is
// digested, and sealed when seal is set (Plan needs only digests). Templates are
// cleared: what comes back can be stored and shown. A value that is already resolved
// (a stored revision's) is kept.
func (e *Engine) resolveSecrets(ctx context.Context, sources []api.SecretSource, services []api.Service, seal bool) ([]api.Service, error) {
	byName := map[string]api.SecretSource{}
	for _, s := range sources {
		byName[s.Name] = s
	}
	values := map[string][]byte{}
	lookup := func(name string) ([]byte, error) {
		if v, ok := values[name]; ok {
			return v, nil
		}
		src, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("secret %q is not declared (add a secret block for it)", name)
		}
		v, err := secret.Resolve(ctx, secret.Source{Name: src.Name, File: src.File, Env: src.Env, Command: src.Command, Dir: src.Dir})
		if err != nil {
			return nil, err
		}
		values[name] = v
		return v, nil
	}
	resolve := func(svc string, in map[string]api.SecretValue) (map[string]api.SecretValue, error) {
		if len(in) == 0 {
			return in, nil
		}
		out := make(map[string]api.SecretValue, len(in))
		for k, sv := range in {
			if sv.Template == "" {
				out[k] = sv
				continue
			}
			v, err := spec.ExpandSecrets(sv.Template, lookup)
			if err != nil {
				return nil, fmt.Errorf("service %s: %s: %w", svc, k, err)
			}
			r := api.SecretValue{Digest: e.key.Digest(v)}
			if seal {
				r.Sealed = e.key.Seal(v)
			}
			out[k] = r
		}
		return out, nil
	}
	out := make([]api.Service, 0, len(services))
	for _, svc := range services {
		var err error
		if svc.SecretEnv, err = resolve(svc.Name, svc.SecretEnv); err != nil {
			return nil, err
		}
		if svc.SecretFiles, err = resolve(svc.Name, svc.SecretFiles); err != nil {
			return nil, err
		}
		for k := range svc.SecretEnv {
			if _, dup := svc.Env[k]; dup {
				return nil, fmt.Errorf("service %s: env %s is given both as a plain value and as a secret", svc.Name, k)
			}
		}
		out = append(out, svc)
	}
	return out, nil
}

// serverSpec is the spec of svc's servers: its secrets opened with the state
// directory's key (only the digests reach anything recorded).
func (e *Engine) serverSpec(svc api.Service, revision int64) (driver.ServerSpec, error) {
	s := driver.ServerSpec{
		Project: e.opts.Project, Service: svc.Name, Revision: revision, Image: svc.Image,
		Command: svc.Command, Args: svc.Args, Env: maps.Clone(svc.Env), Port: svc.Port, Writable: svc.Writable,
		User: svc.User, Init: svc.Init, StopSignal: svc.StopSignal, StopTimeout: svc.StopTimeout,
		Resources: driver.Resources{CPUs: svc.Resources.CPUs, MemoryBytes: svc.Resources.MemoryBytes, PIDs: svc.Resources.PIDs},
	}
	if e.caps.Readiness { // the runtime runs the check itself
		h := svc.Health
		s.Probe = &driver.Probe{HTTPPath: h.HTTP, Period: h.Interval, Timeout: h.Timeout,
			SuccessThreshold: h.HealthyThreshold, FailureThreshold: h.UnhealthyThreshold}
	}
	open := func(sv api.SecretValue) ([]byte, error) {
		if sv.Sealed == "" {
			return nil, fmt.Errorf("service %s: a secret of revision %d is not resolved", svc.Name, revision)
		}
		v, err := e.key.Open(sv.Sealed)
		if err != nil {
			return nil, fmt.Errorf("service %s, revision %d: %w (was %s replaced?)", svc.Name, revision, err, secret.KeyFile)
		}
		return v, nil
	}
	for _, k := range slices.Sorted(maps.Keys(svc.SecretEnv)) {
		v, err := open(svc.SecretEnv[k])
		if err != nil {
			return driver.ServerSpec{}, err
		}
		if s.Env == nil {
			s.Env = map[string]string{}
		}
		s.Env[k] = string(v)
	}
	for _, p := range slices.Sorted(maps.Keys(svc.SecretFiles)) {
		v, err := open(svc.SecretFiles[p])
		if err != nil {
			return driver.ServerSpec{}, err
		}
		if s.Files == nil {
			s.Files = map[string][]byte{}
		}
		s.Files[p] = v
	}
	s.Digests = driver.Digests(s.Env, s.Files, e.key.Digest)
	return s, nil
}

// plannedSpec is serverSpec for a plan: secrets may be resolved but not sealed, so the
// spec is built from their digests alone (the hash is all a plan compares).
func (e *Engine) plannedSpec(svc api.Service, revision int64) (driver.ServerSpec, error) {
	sealed := true
	for _, sv := range svc.SecretEnv {
		sealed = sealed && sv.Sealed != ""
	}
	for _, sv := range svc.SecretFiles {
		sealed = sealed && sv.Sealed != ""
	}
	if sealed {
		return e.serverSpec(svc, revision)
	}
	plain := svc
	plain.SecretEnv, plain.SecretFiles = nil, nil
	s, err := e.serverSpec(plain, revision)
	if err != nil {
		return s, err
	}
	if s.Digests == nil {
		s.Digests = map[string]string{}
	}
	for k, sv := range svc.SecretEnv {
		s.Digests["env:"+k] = sv.Digest
	}
	for p, sv := range svc.SecretFiles {
		s.Digests["file:"+p] = sv.Digest
	}
	return s, nil
}

// comparable is svc as two revisions are compared: secrets by digest alone (a value
// sealed twice differs, the digest does not).
func comparable(svc api.Service) string {
	strip := func(m map[string]api.SecretValue) map[string]api.SecretValue {
		if m == nil {
			return nil
		}
		out := make(map[string]api.SecretValue, len(m))
		for k, v := range m {
			out[k] = api.SecretValue{Digest: v.Digest}
		}
		return out
	}
	svc.SecretEnv, svc.SecretFiles = strip(svc.SecretEnv), strip(svc.SecretFiles)
	b, _ := json.Marshal(svc)
	return string(b)
}
