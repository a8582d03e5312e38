package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/resolve"
	"github.com/kiln-build/kiln/internal/spec"
)

// deployment is a spec resolved for the daemon: every service with the digest of the
// image it runs.
type deployment struct {
	cfg       *spec.Config
	stateDir  string
	services  []api.Service
	pipelines []api.Pipeline
	secrets   []api.SecretSource
	source    string
	commit    string
	// runtime is the one the spec's runtime block names, "" when it has none.
	runtime string
}

// resolve loads the spec, bakes the images its services run (quietly unless progress
// is shown), and returns the services as the daemon takes them. Only the named services
// when names is not empty.
//
// A dry run (kiln plan) bakes without recording the images as current (see
// bake.Options.DryRun): a plan changes nothing.
func (g *globals) resolve(ctx context.Context, names []string, progressTo io.Writer, dryRun bool) (*deployment, error) {
	cfg, err := g.loadSpec()
	if err != nil {
		return nil, err
	}
	if len(cfg.Services) == 0 {
		return nil, fmt.Errorf("%s declares no services: add a service block (see README)", cfg.Filename)
	}
	services := cfg.Services
	if len(names) > 0 {
		services = nil
		for _, n := range names {
			s := cfg.Service(n)
			if s == nil {
				return nil, fmt.Errorf("no service %q in %s", n, cfg.Filename)
			}
			services = append(services, s)
		}
	}
	stateDir, err := g.state(cfg)
	if err != nil {
		return nil, err
	}
	store, err := imagestore.Open(stateDir)
	if err != nil {
		return nil, err
	}
	src, err := bake.ReadSource(ctx, cfg.Dir, nil)
	if err != nil {
		return nil, err
	}
	images, err := resolve.Images(cfg, services)
	if err != nil {
		return nil, err
	}
	var baker resolve.Baker
	done := func() {}
	if len(images) > 0 {
		unlock, err := store.Lock(ctx)
		if err != nil {
			return nil, err
		}
		prog := newProgress(progressTo, false, images)
		done = func() { prog.stop(); unlock() } // before an error is printed
		opts := g.bakeOptions(cfg, src, prog.event)
		opts.DryRun = dryRun
		if baker, err = bake.NewBaker(store, opts); err != nil {
			done()
			return nil, err
		}
	}
	resolved, baked, err := resolve.Services(ctx, cfg, services, baker, store)
	done()
	if err != nil {
		return nil, g.bakeError(cfg, err)
	}
	source, _ := os.ReadFile(cfg.Filename)
	commit := src.Revision
	if src.Modified && commit != "" && !strings.HasSuffix(commit, "-dirty") {
		commit += "-dirty" // the spec deployed is not the commit's: say so, as the image does
	}
	for _, r := range baked {
		if commit != "" && strings.HasSuffix(r.Revision, "-dirty") && !strings.HasSuffix(commit, "-dirty") {
			commit += "-dirty" // an untracked file went into an image
		}
	}
	d := &deployment{cfg: cfg, stateDir: stateDir, source: string(source), commit: commit, secrets: engine.SecretsFromSpec(cfg)}
	if cfg.Runtime != nil {
		d.runtime = cfg.Runtime.Name
	}
	for _, p := range cfg.Pipelines {
		specPath := filepath.Base(cfg.Filename)
		if abs, err := filepath.Abs(cfg.Filename); err == nil && filepath.IsAbs(p.Repo) {
			if rel, err := filepath.Rel(p.Repo, abs); err == nil && !strings.HasPrefix(rel, "..") {
				specPath = rel
			}
		}
		ap := engine.PipelineFromSpec(p, specPath)
		ap.Vars, err = g.setVars(cfg)
		if err != nil {
			return nil, err
		}
		ap.Sensitive, ap.Secrets = cfg.Sensitive, d.secrets
		d.pipelines = append(d.pipelines, ap)
	}
	d.services = resolved
	return d, nil
}

// client finds the daemon of the spec here.
func (g *globals) client() (*api.Client, error) {
	dir, err := g.state(nil)
	if err != nil {
		return nil, err
	}
	return api.Discover(dir)
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// printEvent prints one event as a progress line.
func printEvent(w io.Writer, e api.Event) {
	fmt.Fprintf(w, "%s  %-10s %s\n", e.Time.Local().Format("15:04:05"), e.Service, e.Message)
}

// printResult prints the outcome of each service and returns an error if any failed.
func printResult(w io.Writer, res api.Result) error {
	var failed []string
	for _, s := range res.Services {
		switch s.Outcome {
		case "deployed":
			if s.Changed {
				fmt.Fprintf(w, "%s: revision %d deployed, serving at %s\n", s.Service, s.Revision, s.URL)
			} else {
				fmt.Fprintf(w, "%s: no changes (revision %d), serving at %s\n", s.Service, s.Revision, s.URL)
			}
		case "rolled_back":
			fmt.Fprintf(w, "%s: revision %d FAILED and was rolled back; the previous revision is serving.\n  cause: %s\n", s.Service, s.Revision, s.Detail)
			failed = append(failed, s.Service)
		case "destroyed":
			fmt.Fprintf(w, "%s: destroyed\n", s.Service)
		case "pending":
			fmt.Fprintf(w, "%s: revision %d is rolling out (detached); follow it with `kiln status`\n", s.Service, s.Revision)
		default:
			fmt.Fprintf(w, "%s: revision %d FAILED: %s\n", s.Service, s.Revision, s.Detail)
			failed = append(failed, s.Service)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rollout failed for %s", strings.Join(failed, ", "))
	}
	return nil
}

func since(t time.Time) string { return ago(time.Since(t), t) }

// ago says how long ago d was, "4s ago", or t's date when that is over two days.
func ago(d time.Duration, t time.Time) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}

// setVars are the variables the user set, by -var or KILN_VAR_, with their values: what
// a pipeline needs to evaluate later commits' specs the same way.
func (g *globals) setVars(cfg *spec.Config) (map[string]string, error) {
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, spec.EnvPrefix) {
			if name := strings.TrimPrefix(k, spec.EnvPrefix); cfg.Variables != nil {
				if _, declared := cfg.Variables[name]; declared {
					vars[name] = v
				}
			}
		}
	}
	flags, err := g.varValues()
	if err != nil {
		return nil, err
	}
	for k, v := range flags {
		vars[k] = v
	}
	return vars, nil
}
