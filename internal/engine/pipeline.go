package engine

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/health"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// candidateSuffix names the service of a pipeline's candidate servers: they run beside
// the live ones, never behind the front door. A candidate is told apart by its role
// (driver.RoleCandidate), never by this name, which a user's service may have too.
const candidateSuffix = "-candidate"

// pipelineWorker runs one pipeline's runs, one at a time, in commit order.
type pipelineWorker struct {
	def    api.Pipeline
	wake   chan struct{}
	cancel context.CancelFunc
	gitMu  sync.Mutex // one fetch or checkout of the mirror at a time
}

// setPipelines records pipelines and (re)starts their workers. A definition holds
// secrets (the webhook secret, the variables, where secrets come from), so it is
// stored sealed.
func (e *Engine) setPipelines(ctx context.Context, defs []api.Pipeline) error {
	for _, p := range defs {
		if !spec.ValidName(p.Name) {
			return fmt.Errorf("pipeline name %q: use a lowercase letter, then lowercase letters, digits, '-', '_' or '.'", p.Name)
		}
	}
	for _, p := range defs {
		b, _ := json.Marshal(p)
		if err := e.opts.State.SetPipeline(ctx, p.Name, e.key.Seal(b)); err != nil {
			return err
		}
		e.startPipeline(p)
	}
	return nil
}

// pipelineDefs returns the recorded pipelines' definitions, opened.
func (e *Engine) pipelineDefs(ctx context.Context) ([]api.Pipeline, error) {
	defs, err := e.opts.State.Pipelines(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Pipeline
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		b := []byte(defs[name])
		if strings.HasPrefix(defs[name], "sealed:") {
			if b, err = e.key.Open(defs[name]); err != nil {
				e.log.Error("a pipeline's definition cannot be read: apply its spec again", "pipeline", name, "err", err)
				continue
			}
		}
		var p api.Pipeline
		if json.Unmarshal(b, &p) == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// redactURL is a repository URL as kiln shows it: without the password or token that
// may be in it.
func redactURL(repo string) string {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil {
		return repo
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	} else {
		u.User = url.User("redacted")
	}
	return u.String()
}

// redactErr is err with the repository's URL shown without its credentials.
func redactErr(def api.Pipeline, err error) error {
	if err == nil || redactURL(def.Repo) == def.Repo {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), def.Repo, redactURL(def.Repo)))
}

// startPipeline starts def's worker, replacing a worker of an older definition.
func (e *Engine) startPipeline(def api.Pipeline) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.pipelines[def.Name]; old != nil {
		if b1, b2 := mustJSON(old.def), mustJSON(def); b1 == b2 {
			return
		}
		old.cancel()
	}
	base := e.ctx
	if base == nil {
		return // Start will start it
	}
	ctx, cancel := context.WithCancel(base)
	w := &pipelineWorker{def: def, wake: make(chan struct{}, 1), cancel: cancel}
	e.pipelines[def.Name] = w
	e.work.Add(1)
	go func() {
		defer e.work.Done()
		e.runWorker(ctx, w)
	}()
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// resumePipelines marks runs a stop interrupted, removes their candidates, and starts
// every recorded pipeline.
func (e *Engine) resumePipelines(ctx context.Context) error {
	runs, err := e.opts.State.InterruptRuns(ctx)
	if err != nil {
		return err
	}
	for _, r := range runs {
		e.event(r.Pipeline, "", "pipeline", "run %d of %s was interrupted by a stop", r.ID, shortSHA(r.Commit))
	}
	e.removeCandidates(ctx)
	defs, err := e.pipelineDefs(ctx)
	if err != nil {
		return err
	}
	for _, p := range defs {
		e.startPipeline(p)
	}
	return nil
}

// removeCandidates destroys the candidates a stop left behind. They are told by their
// role, not their name: a user's service may be called "x-candidate" too. Those of a
// kiln that gave candidates no role are told by their name and by being no recorded
// service's; the servers are listed before the services are read, so that a service
// applied meanwhile is among them.
func (e *Engine) removeCandidates(ctx context.Context) {
	candidates, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project, Role: driver.RoleCandidate})
	if err != nil {
		e.log.Error("listing candidates", "err", err)
		return
	}
	old, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project})
	if err != nil {
		e.log.Error("listing candidates", "err", err)
		return
	}
	services, err := e.opts.State.Services(ctx)
	if err != nil {
		e.log.Error("listing candidates", "err", err)
		return
	}
	recorded := map[string]bool{}
	for _, sv := range services {
		recorded[sv.Name] = true
	}
	for _, s := range old {
		if strings.HasSuffix(s.Service, candidateSuffix) && !recorded[s.Service] {
			candidates = append(candidates, s)
		}
	}
	for _, s := range candidates {
		if err := e.opts.Driver.Destroy(ctx, s.ID); err != nil {
			e.log.Error("destroying a candidate", "service", s.Service, "server_id", s.ID, "err", err)
		}
	}
}

func shortSHA(s string) string { return s[:min(12, len(s))] }

// runWorker polls the source (if the pipeline polls) and runs queued runs in order.
func (e *Engine) runWorker(ctx context.Context, w *pipelineWorker) {
	var tick <-chan time.Time
	var changed <-chan struct{}
	if w.def.Poll > 0 {
		t := time.NewTicker(w.def.Poll)
		defer t.Stop()
		tick = t.C
		// A local repository is watched too: a commit is noticed at once, not at the
		// next poll.
		changed = watchLocal(ctx, w.def.Repo, w.def.Branch)
	}
	lastErr := ""
	poll := func() {
		_, err := e.queueHead(ctx, w, "", "poll")
		err = redactErr(w.def, err)
		switch {
		case err == nil || errors.Is(err, store.ErrRunExists) || ctx.Err() != nil:
			lastErr = ""
		case err.Error() != lastErr: // say it once, not at every poll
			lastErr = err.Error()
			e.event(w.def.Name, "", "pipeline", "cannot read the source: %v", err)
		}
	}
	poll()
	for {
		for {
			run, err := e.opts.State.NextRun(ctx, w.def.Name)
			if err != nil {
				break
			}
			e.execute(ctx, w, run)
			if ctx.Err() != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
			poll()
		case <-changed:
			poll()
		case <-w.wake:
		}
	}
}

// queueHead fetches the source and queues a run of commit (the branch's head when "").
func (e *Engine) queueHead(ctx context.Context, w *pipelineWorker, commit, trigger string) (store.Run, error) {
	w.gitMu.Lock()
	repo, err := e.mirror(ctx, w.def)
	if err != nil {
		w.gitMu.Unlock()
		return store.Run{}, err
	}
	var hash plumbing.Hash
	if commit == "" {
		ref, err := repo.Reference(plumbing.NewBranchReferenceName(w.def.Branch), true)
		if err != nil {
			w.gitMu.Unlock()
			return store.Run{}, fmt.Errorf("branch %q of %s: %w", w.def.Branch, w.def.Repo, err)
		}
		hash = ref.Hash()
	} else {
		h, err := repo.ResolveRevision(plumbing.Revision(commit))
		if err != nil {
			w.gitMu.Unlock()
			return store.Run{}, fmt.Errorf("commit %q is not in %s: %w", commit, w.def.Repo, err)
		}
		hash = *h
	}
	c, err := repo.CommitObject(hash)
	w.gitMu.Unlock()
	if err != nil {
		return store.Run{}, err
	}
	msg, _, _ := strings.Cut(c.Message, "\n")
	run, err := e.opts.State.QueueRun(ctx, w.def.Name, hash.String(), msg, trigger)
	if err != nil {
		return run, err
	}
	e.event(w.def.Name, "", "pipeline", "run %d queued for commit %s (%s, by %s)", run.ID, shortSHA(run.Commit), msg, trigger)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return run, nil
}

// mirror opens the pipeline's bare mirror of its source, cloning it the first time,
// and fetches the branch. The caller holds w.gitMu.
func (e *Engine) mirror(ctx context.Context, def api.Pipeline) (*git.Repository, error) {
	dir := filepath.Join(e.opts.StateDir, "pipelines", def.Name, "mirror")
	branch := plumbing.NewBranchReferenceName(def.Branch)
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainCloneContext(ctx, dir, true, &git.CloneOptions{URL: def.Repo, ReferenceName: branch, SingleBranch: true})
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("cloning %s (branch %s): %w", def.Repo, def.Branch, err)
		}
		return repo, nil
	}
	if err != nil {
		return nil, err
	}
	spec := gitconfig.RefSpec(fmt.Sprintf("+%s:%s", branch, branch))
	err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: []gitconfig.RefSpec{spec}, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetching %s (branch %s): %w", def.Repo, def.Branch, err)
	}
	return repo, nil
}

// execute carries a run through its stages: bake, test, deploy, promote.
func (e *Engine) execute(ctx context.Context, w *pipelineWorker, run store.Run) {
	def := w.def
	defer func() {
		// A commit must never bring the daemon (and every front door) down: a panic is
		// the run's failure.
		if p := recover(); p != nil {
			e.log.Error("a pipeline run panicked", "pipeline", def.Name, "run", run.ID, "panic", p, "stack", string(debug.Stack()))
			detail := fmt.Sprintf("internal error: %v", p)
			e.finishRun(ctx, run, "failed", detail)
			e.metrics.runs.WithLabelValues(def.Name, "failed").Inc()
			e.event(def.Name, "", "pipeline", "run %d of %s failed: %s", run.ID, shortSHA(run.Commit), detail)
		}
	}()
	// Candidates that passed are torn down while the deploy runs; the run is over only
	// once they are gone.
	var teardown sync.WaitGroup
	defer teardown.Wait()
	e.event(def.Name, "", "pipeline", "run %d of %s started", run.ID, shortSHA(run.Commit))
	services, err := e.stage(ctx, run, "bake", func(log io.Writer) ([]api.Service, error) { return e.bakeCommit(ctx, w, run, log) })
	if err == nil {
		_, err = e.stage(ctx, run, "test", func(log io.Writer) ([]api.Service, error) {
			return nil, e.testCandidates(ctx, def, services, &teardown, log)
		})
	}
	if err == nil {
		_, err = e.stage(ctx, run, "deploy", func(log io.Writer) ([]api.Service, error) {
			return nil, e.deployRun(ctx, def, run, pick(services, def.Services), log)
		})
	}
	for _, name := range def.Promote {
		if err != nil {
			break
		}
		_, err = e.stage(ctx, run, "promote:"+name, func(log io.Writer) ([]api.Service, error) {
			return nil, e.deployRun(ctx, def, run, pick(services, []string{name}), log)
		})
	}
	teardown.Wait()
	if ctx.Err() != nil {
		return // InterruptRuns marks it on the next start
	}
	state, detail := "succeeded", ""
	if err != nil {
		state, detail = "failed", redactErr(def, err).Error()
	}
	e.finishRun(ctx, run, state, detail)
	e.metrics.runs.WithLabelValues(def.Name, state).Inc()
	e.event(def.Name, "", "pipeline", "run %d of %s %s%s", run.ID, shortSHA(run.Commit), state, suffix(detail))
}

// finishRun records the end of a run; a failure is logged and counted.
func (e *Engine) finishRun(ctx context.Context, run store.Run, state, detail string) {
	if err := e.opts.State.FinishRun(context.WithoutCancel(ctx), run.ID, state, detail); err != nil {
		e.stateWriteFailed("run", err, "pipeline", run.Pipeline, "run", run.ID, "state", state, "detail", detail)
	}
}

func suffix(detail string) string {
	if detail == "" {
		return ""
	}
	return ": " + detail
}

func pick(services []api.Service, names []string) []api.Service {
	var out []api.Service
	for _, s := range services {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// stage records one stage around fn, with what fn writes as its log.
func (e *Engine) stage(ctx context.Context, run store.Run, name string, fn func(io.Writer) ([]api.Service, error)) ([]api.Service, error) {
	if err := e.opts.State.StartStage(ctx, run.ID, name); err != nil {
		e.stateWriteFailed("stage", err, "pipeline", run.Pipeline, "run", run.ID, "stage", name)
	}
	var log bytes.Buffer
	start := time.Now()
	out, err := func() (out []api.Service, err error) {
		defer func() {
			if p := recover(); p != nil {
				e.log.Error("a pipeline stage panicked", "pipeline", run.Pipeline, "run", run.ID, "stage", name, "panic", p, "stack", string(debug.Stack()))
				err = fmt.Errorf("internal error: %v", p)
			}
		}()
		return fn(&log)
	}()
	state := "succeeded"
	if err != nil {
		state = "failed"
		fmt.Fprintf(&log, "error: %v\n", err)
	}
	if err := e.opts.State.FinishStage(context.WithoutCancel(ctx), run.ID, name, state, log.String()); err != nil {
		e.stateWriteFailed("stage", err, "pipeline", run.Pipeline, "run", run.ID, "stage", name, "state", state)
	}
	stageKind, _, _ := strings.Cut(name, ":")
	e.metrics.stages.WithLabelValues(run.Pipeline, stageKind).Observe(time.Since(start).Seconds())
	e.event(run.Pipeline, "", "pipeline", "run %d: %s %s in %s", run.ID, name, state, time.Since(start).Round(10*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// bakeCommit checks the commit out into a clean directory (never the daemon's working
// tree), loads the spec found there, and bakes the images of the pipeline's services.
func (e *Engine) bakeCommit(ctx context.Context, w *pipelineWorker, run store.Run, log io.Writer) ([]api.Service, error) {
	def := w.def
	dir, err := os.MkdirTemp(filepath.Join(e.opts.StateDir, "pipelines", def.Name), "checkout-")
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil { // the bake is confined to it, by absolute path
		return nil, err
	}
	defer os.RemoveAll(dir)
	w.gitMu.Lock()
	commit, err := e.checkout(def, run.Commit, dir)
	w.gitMu.Unlock()
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
	var names []string
	for _, n := range append(slices.Clone(def.Services), def.Promote...) {
		s := cfg.Service(n)
		if s == nil {
			return nil, fmt.Errorf("the spec at %s has no service %q", shortSHA(run.Commit), n)
		}
		if s.Image.Image != "" {
			names = append(names, s.Image.Image)
		}
	}
	images, err := bake.Select(cfg, names)
	if err != nil {
		return nil, err
	}
	src := bake.CommitSource(run.Commit, commit.Committer.When, def.Repo)
	unlock, err := e.opts.Images.Lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	baker, err := bake.NewBaker(e.opts.Images, bake.Options{Source: src, Confine: true, Root: dir,
		// The pipeline's own: nothing its commits' builds write reaches another pipeline.
		BuildCache: filepath.Join(filepath.Dir(dir), "gocache"),
		Progress: func(ev bake.Event) {
			if ev.Step != "" && ev.State != bake.StateStart {
				fmt.Fprintf(log, "%s: %s (%s)\n", ev.Image, ev.Step, ev.State)
			}
		}})
	if err != nil {
		return nil, err
	}
	results, err := baker.Bake(ctx, images)
	if err != nil {
		return nil, err
	}
	digests := map[string]*bake.Result{}
	for _, r := range results {
		digests[r.Name] = r
		fmt.Fprintf(log, "%s\n", r.Ref())
	}
	var out []api.Service
	for _, n := range append(slices.Clone(def.Services), def.Promote...) {
		s := cfg.Service(n)
		svc := ServiceFromSpec(s)
		if r := digests[s.Image.Image]; r != nil {
			svc.Image, svc.ImageName = r.Digest.String(), r.Name
		} else {
			// An image of the store by digest: named as the store names it, as kiln
			// apply does (not after the service).
			entry, err := e.opts.Images.Find(s.Image.Digest)
			if err != nil {
				return nil, fmt.Errorf("service %s: image %s: %w", s.Name, s.Image.Digest, err)
			}
			svc.Image, svc.ImageName = entry.Digest.String(), entry.Name
		}
		out = append(out, svc)
	}
	// Where a service listens is the applied spec's to say: a commit could otherwise
	// open a front door on every address, or on a port below 1024 (the daemon may be root).
	for _, svc := range out {
		if cur, ok := e.currentRevision(ctx, svc.Name); ok {
			if was, err := decodeService(cur); err == nil && was.Listen != svc.Listen {
				return nil, fmt.Errorf("the spec at %s moves the front door of %s from %s to %s: a commit cannot; apply the spec to move it", shortSHA(run.Commit), svc.Name, was.Listen, svc.Listen)
			}
		}
	}
	// The commit names secrets; where they come from is the applied spec's to say.
	for _, sec := range cfg.Secrets {
		if !slices.ContainsFunc(def.Secrets, func(s api.SecretSource) bool { return s.Name == sec.Name }) {
			return nil, fmt.Errorf("the spec at %s declares secret %q, which the spec the pipeline was applied with does not: a commit can use the applied spec's secrets, never add one", shortSHA(run.Commit), sec.Name)
		}
	}
	return e.resolveSecrets(ctx, def.Secrets, out, true)
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

// checkout writes the tree of commit, read from the pipeline's mirror, into dir: a clean
// checkout, with no .git directory. The caller holds the worker's gitMu.
func (e *Engine) checkout(def api.Pipeline, commit, dir string) (*object.Commit, error) {
	repo, err := git.PlainOpen(filepath.Join(e.opts.StateDir, "pipelines", def.Name, "mirror"))
	if err != nil {
		return nil, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return c, writeTree(root, tree)
}

// testCandidates starts candidate servers of each service's new image, away from the
// front door, waits until they are healthy, runs the checks against them, and destroys
// them whatever the outcome: a failed candidate before it returns, a passed one in the
// background, counted in teardown, so that the deploy need not wait for it.
func (e *Engine) testCandidates(ctx context.Context, def api.Pipeline, services []api.Service, teardown *sync.WaitGroup, log io.Writer) error {
	tctx, cancel := context.WithTimeout(ctx, def.TestTimeout)
	defer cancel()
	for _, svc := range pick(services, def.Services) {
		t := time.Now()
		if err := e.ensureImage(tctx, svc.Image); err != nil {
			return err
		}
		fmt.Fprintf(log, "image %s ready in the engine (%s)\n", svc.Image, time.Since(t).Round(time.Millisecond))
		t = time.Now()
		spec, err := e.serverSpec(svc, 0)
		if err != nil {
			return err
		}
		spec.Service, spec.Role = svc.Name+candidateSuffix, driver.RoleCandidate
		srv, err := e.opts.Driver.Create(tctx, spec)
		if err != nil {
			return fmt.Errorf("starting a candidate of %s: %w", svc.Name, err)
		}
		fmt.Fprintf(log, "candidate %s started (%s)\n", srv.Name, time.Since(t).Round(time.Millisecond))
		err = e.testOne(tctx, def, svc, srv, log)
		if err != nil {
			e.destroyCandidate(context.WithoutCancel(ctx), def, srv)
			fmt.Fprintf(log, "candidate %s destroyed\n", srv.Name)
			return err
		}
		fmt.Fprintf(log, "candidate %s passed; it is destroyed while the deploy runs\n", srv.Name)
		teardown.Add(1)
		e.work.Add(1) // a daemon shutting down waits for it too
		go func() {
			defer e.work.Done()
			defer teardown.Done()
			e.destroyCandidate(context.WithoutCancel(ctx), def, srv)
		}()
	}
	return nil
}

// destroyCandidate removes a candidate server; a failure is an event, and the next
// start of the daemon removes what is left.
func (e *Engine) destroyCandidate(ctx context.Context, def api.Pipeline, srv driver.Server) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.opts.Driver.Destroy(ctx, srv.ID); err != nil {
		e.event(def.Name, "", "pipeline", "candidate %s was not destroyed: %v", srv.Name, err)
	}
}

func (e *Engine) testOne(ctx context.Context, def api.Pipeline, svc api.Service, srv driver.Server, log io.Writer) error {
	fmt.Fprintf(log, "candidate %s of %s at %s\n", srv.Name, svc.Name, srv.Address)
	h := svc.Health
	if err := health.WaitHealthy(ctx, srv.Address, health.Check{HTTPPath: h.HTTP, TCP: h.TCP, Timeout: h.Timeout}, h.Interval, 0, h.StartPeriod, h.HealthyThreshold); err != nil {
		return fmt.Errorf("the candidate of %s never became healthy: %w", svc.Name, err)
	}
	fmt.Fprintln(log, "candidate is healthy")
	url := "http://" + srv.Address
	for _, c := range def.Checks {
		if err := runCheck(ctx, c, url, log); err != nil {
			return fmt.Errorf("check %q failed: %w", c.Name, err)
		}
		fmt.Fprintf(log, "check %q passed\n", c.Name)
	}
	return nil
}

func runCheck(ctx context.Context, c api.Check, url string, log io.Writer) error {
	if len(c.Command) > 0 {
		cmd := exec.CommandContext(ctx, c.Command[0], c.Command[1:]...)
		cmd.Env = append(os.Environ(), "KILN_CANDIDATE_URL="+url)
		cmd.Stdout, cmd.Stderr = log, log
		return cmd.Run()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+c.Path, nil)
	if err != nil {
		return err
	}
	resp, err := checkClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	status := c.Status
	if status == 0 {
		status = http.StatusOK
	}
	if resp.StatusCode != status {
		return fmt.Errorf("GET %s: status %d, want %d", c.Path, resp.StatusCode, status)
	}
	if c.Body != "" && !strings.Contains(string(body), c.Body) {
		return fmt.Errorf("GET %s: the body does not contain %q", c.Path, c.Body)
	}
	return nil
}

// checkClient is the client of HTTP checks: it never follows a redirect, which the
// candidate (the commit's code) could point anywhere; a check expecting 3xx says so.
var checkClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// deployRun applies services as a new revision and waits for the outcome.
func (e *Engine) deployRun(ctx context.Context, def api.Pipeline, run store.Run, services []api.Service, log io.Writer) error {
	req := api.ApplyRequest{Services: services, Commit: run.Commit,
		Source: fmt.Sprintf("pipeline %s, run %d", def.Name, run.ID), User: "pipeline " + def.Name}
	res, err := e.Apply(ctx, req)
	for waited := false; errors.Is(err, store.ErrRolloutInProgress); res, err = e.Apply(ctx, req) {
		if !waited {
			fmt.Fprintf(log, "waiting for the rollout in progress: %v\n", err)
			waited = true
		}
		e.sleep(ctx, time.Second) // a pipeline waits its turn rather than fail
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	for _, s := range res.Services {
		fmt.Fprintf(log, "%s: revision %d %s%s\n", s.Service, s.Revision, s.Outcome, suffix(s.Detail))
		if s.Outcome != string(store.OutcomeDeployed) {
			return fmt.Errorf("the rollout of %s was %s: %s", s.Service, s.Outcome, s.Detail)
		}
	}
	return nil
}

// Trigger queues a run of commit (the branch's head when "") of the named pipeline.
func (e *Engine) Trigger(ctx context.Context, pipeline, commit, trigger string) (api.Run, error) {
	e.mu.Lock()
	w := e.pipelines[pipeline]
	e.mu.Unlock()
	if w == nil {
		return api.Run{}, fmt.Errorf("pipeline %q: %w", pipeline, store.ErrNotFound)
	}
	r, err := e.queueHead(ctx, w, commit, trigger)
	return apiRun(r), redactErr(w.def, err)
}

// ErrBadSignature means a webhook call was not signed with the pipeline's secret.
var ErrBadSignature = errors.New("the webhook call is not signed with the pipeline's secret")

// Webhook handles a push notification: body signed with HMAC-SHA256 of the pipeline's
// webhook secret (header value "sha256=<hex>"), in the usual shape ({"ref":
// "refs/heads/main", "after": "<sha>"}). A push to another branch is ignored.
func (e *Engine) Webhook(ctx context.Context, pipeline string, body []byte, signature string) (api.Run, bool, error) {
	e.mu.Lock()
	w := e.pipelines[pipeline]
	e.mu.Unlock()
	if w == nil {
		// The same answer as a bad signature: an unsigned caller learns no pipeline names.
		return api.Run{}, false, ErrBadSignature
	}
	if w.def.WebhookSecret == "" {
		return api.Run{}, false, fmt.Errorf("%w: pipeline %q has no webhook_secret, so its webhook is off", ErrBadSignature, pipeline)
	}
	mac := hmac.New(sha256.New, []byte(w.def.WebhookSecret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return api.Run{}, false, ErrBadSignature
	}
	var push struct {
		Ref   string `json:"ref"`
		After string `json:"after"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		return api.Run{}, false, fmt.Errorf("malformed push payload: %w", err)
	}
	if push.Ref != "" && push.Ref != plumbing.NewBranchReferenceName(w.def.Branch).String() {
		return api.Run{}, false, nil
	}
	run, err := e.queueHead(ctx, w, push.After, "webhook")
	return apiRun(run), true, redactErr(w.def, err)
}

// Pipelines returns the recorded pipelines as they may be shown: without their webhook
// secret, variables and secret sources, and with their repository's URL redacted.
func (e *Engine) Pipelines(ctx context.Context) ([]api.Pipeline, error) {
	defs, err := e.pipelineDefs(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Pipeline{}
	for _, p := range defs {
		p.Webhook, p.WebhookSecret = p.WebhookSecret != "", ""
		p.Vars, p.Secrets, p.Sensitive = nil, nil, nil
		p.Repo = redactURL(p.Repo)
		out = append(out, p)
	}
	return out, nil
}

// Runs returns the latest runs of pipeline (all when "").
func (e *Engine) Runs(ctx context.Context, pipeline string) ([]api.Run, error) {
	runs, err := e.opts.State.Runs(ctx, pipeline, 100)
	out := []api.Run{}
	for _, r := range runs {
		out = append(out, apiRun(r))
	}
	return out, err
}

// Run returns one run with its stages and their logs.
func (e *Engine) Run(ctx context.Context, id int64) (api.Run, error) {
	r, err := e.opts.State.Run(ctx, id)
	return apiRun(r), err
}

// RunStages returns a run's stages without their logs.
func (e *Engine) RunStages(ctx context.Context, id int64) ([]api.Stage, error) {
	sts, err := e.opts.State.RunStages(ctx, id)
	return apiRun(store.Run{Stages: sts}).Stages, err
}

// apiRun is a run as the API shows it.
func apiRun(r store.Run) api.Run {
	out := api.Run{ID: r.ID, Pipeline: r.Pipeline, Commit: r.Commit, Message: r.Message, Trigger: r.Trigger,
		State: r.State, Detail: r.Detail, Created: r.Created, Started: r.Started, Finished: r.Finished}
	for _, st := range r.Stages {
		out.Stages = append(out.Stages, api.Stage{Name: st.Name, State: st.State, Log: st.Log, Started: st.Started, Finished: st.Finished})
	}
	return out
}
