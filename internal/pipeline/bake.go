package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/resolve"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// bakeCommit checks the commit out into a clean directory (never the daemon's working
// tree), loads the spec found there, and bakes the images of the pipeline's services.
func (m *Manager) bakeCommit(ctx context.Context, w *worker, run store.Run, log io.Writer) ([]api.Service, error) {
	def := w.def
	dir, err := os.MkdirTemp(filepath.Join(m.opts.StateDir, "pipelines", def.Name), "checkout-")
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil { // the bake is confined to it, by absolute path
		return nil, err
	}
	defer os.RemoveAll(dir)
	commit, err := w.mirror.Checkout(run.Commit, dir)
	if err != nil {
		return nil, fmt.Errorf("checking out %s: %w", shortSHA(run.Commit), err)
	}
	// Written under the daemon's umask (077): the sandboxed build's user must read it.
	if err := sandbox.OwnTree(dir); err != nil {
		return nil, fmt.Errorf("checking out %s: %w", shortSHA(run.Commit), err)
	}
	fmt.Fprintf(log, "checked out %s into a clean directory\n", shortSHA(run.Commit))
	specFile := filepath.Join(dir, def.SpecPath)
	source, err := readSpec(dir, def.SpecPath)
	if err != nil {
		return nil, fmt.Errorf("the commit's spec %s: %w", def.SpecPath, err)
	}
	// Parsed under its path in the repository, so diagnostics name the file as the user
	// knows it.
	cfg, diags := spec.Parse(def.SpecPath, source, spec.Options{Vars: def.Vars, Environ: []string{}, Dir: filepath.Dir(specFile), Sensitive: def.Sensitive, Confine: true})
	if diags.HasErrors() {
		spec.WriteText(log, cfg.Files, diags, 0, false)
		return nil, fmt.Errorf("the spec at %s is not valid: %s", shortSHA(run.Commit), diags.Errs()[0].Error())
	}
	// Where servers run is the daemon's: a commit's runtime block moves nothing (its
	// options, a kubeconfig among them, are never read), and one naming another runtime
	// fails the run.
	if cfg.Runtime != nil && cfg.Runtime.Name != m.opts.Driver.Name() {
		return nil, fmt.Errorf("the spec at %s names runtime %s, but this daemon runs servers on %s: a commit cannot move them; apply the spec to choose the runtime",
			shortSHA(run.Commit), cfg.Runtime.Name, m.opts.Driver.Name())
	}
	var services []*spec.Service
	for _, n := range append(slices.Clone(def.Services), def.Promote...) {
		s := cfg.Service(n)
		if s == nil {
			return nil, fmt.Errorf("the spec at %s has no service %q", shortSHA(run.Commit), n)
		}
		services = append(services, s)
	}
	src := bake.CommitSource(run.Commit, commit.When, def.Repo)
	unlock, err := m.opts.Images.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var logMu sync.Mutex // the steps of a bake report from goroutines of their own
	baker, err := bake.NewBaker(m.opts.Images, bake.Options{Source: src, Confine: true, Root: dir,
		// The pipeline's own: nothing its commits' builds write reaches another pipeline.
		BuildCache: filepath.Join(filepath.Dir(dir), "gocache"),
		RunCache:   filepath.Join(filepath.Dir(dir), "runcache"),
		Progress: func(ev bake.Event) {
			if ev.Step != "" && ev.State != bake.StateStart {
				logMu.Lock()
				defer logMu.Unlock()
				fmt.Fprintf(log, "%s: %s (%s)\n", ev.Image, ev.Step, ev.State)
			}
		}})
	if err != nil {
		return nil, err
	}
	out, results, err := resolve.Services(ctx, cfg, services, baker, m.opts.Images)
	for _, r := range results {
		fmt.Fprintf(log, "%s\n", r.Ref())
	}
	if err != nil {
		return nil, err
	}
	// Where a service listens is the applied spec's to say: a commit could otherwise
	// open a front door on every address, or on a port below 1024 (the daemon may be root).
	for _, svc := range out {
		was, ok := m.current(ctx, svc.Name)
		if ok && was.Listen != svc.Listen {
			return nil, fmt.Errorf("the spec at %s moves the front door of %s from %s to %s: a commit cannot; apply the spec to move it", shortSHA(run.Commit), svc.Name, was.Listen, svc.Listen)
		}
		// The daemon asks a canary's Prometheus, and shows what it answers: which one is
		// the applied spec's to say, or a commit could have the daemon query any address.
		if at := prometheusOf(svc); at != "" && (!ok || prometheusOf(was) != at) {
			return nil, fmt.Errorf("the spec at %s has %s's canary ask the Prometheus at %s, which the applied spec does not: a commit cannot choose what the daemon queries; apply the spec to name it", shortSHA(run.Commit), svc.Name, at)
		}
	}
	// The commit names secrets; where they come from is the applied spec's to say.
	for _, sec := range cfg.Secrets {
		if !slices.ContainsFunc(def.Secrets, func(s api.SecretSource) bool { return s.Name == sec.Name }) {
			return nil, fmt.Errorf("the spec at %s declares secret %q, which the spec the pipeline was applied with does not: a commit can use the applied spec's secrets, never add one", shortSHA(run.Commit), sec.Name)
		}
	}
	return m.opts.Engine.SealSecrets(ctx, def.Secrets, out)
}

// prometheusOf is the Prometheus a service's canary asks, "" for none.
func prometheusOf(svc api.Service) string {
	if c := svc.Update.Canary; c != nil && len(c.Analysis.Queries) > 0 {
		return c.Analysis.Prometheus
	}
	return ""
}

// current is the service's current revision as recorded; false when it has none (or it
// cannot be read).
func (m *Manager) current(ctx context.Context, service string) (api.Service, bool) {
	sv, err := m.opts.State.Service(ctx, service)
	if err != nil {
		return api.Service{}, false
	}
	rev, err := m.opts.State.Revision(ctx, service, sv.Current)
	if err != nil {
		return api.Service{}, false
	}
	var svc api.Service
	return svc, json.Unmarshal([]byte(rev.Spec), &svc) == nil
}

// readSpec reads the spec at path in the checkout dir: through an os.Root of it (the
// commit's kiln.hcl may be a link to a host file, whose content would show in the
// run's diagnostics), a regular file, at most spec.MaxSourceBytes.
func readSpec(dir, path string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(path))
	if err != nil {
		return nil, fmt.Errorf("no spec in the commit (or it leads outside the checkout): %w", err)
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, spec.MaxSourceBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > spec.MaxSourceBytes {
		return nil, fmt.Errorf("larger than %d bytes", spec.MaxSourceBytes)
	}
	return b, nil
}
