package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/gitsource"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/secret"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// Engine is what pipelines need of the engine; *engine.Engine is one.
type Engine interface {
	// Apply records a new revision of each service of req whose settings changed and
	// rolls it out; it returns once every outcome is known (req.Detach is not set
	// here). Its error is store.ErrRolloutInProgress while another rollout of one of
	// the services runs.
	Apply(ctx context.Context, req api.ApplyRequest) (api.Result, error)
	// Event records an event and passes it to the engine's subscribers. A record that
	// cannot be written is logged, not returned.
	Event(service, serverID, typ, msg string)
	// SealSecrets resolves every secret template of services from sources, sealed
	// with the daemon's key, as Apply would.
	SealSecrets(ctx context.Context, sources []api.SecretSource, services []api.Service) ([]api.Service, error)
	// ServerSpec is the spec of a server of svc (with sealed secrets) outside any
	// revision: its secrets opened, in the daemon's project.
	ServerSpec(svc api.Service) (driver.ServerSpec, error)
	// EnsureImage makes an image of the store available to the driver; it blocks
	// while the image is loaded.
	EnsureImage(ctx context.Context, digest string) error
}

// Metrics counts what pipelines do among the daemon's metrics; *engine.Engine is one.
type Metrics interface {
	RunEnded(pipeline, state string)
	StageEnded(pipeline, stage string, took time.Duration)
	// StateWriteFailed logs and counts a write to the state that failed where its
	// caller cannot act on the error; attrs say what it was about.
	StateWriteFailed(write string, err error, attrs ...any)
}

// Options configure a Manager.
type Options struct {
	Engine Engine
	// Metrics counts runs, stages and failed writes; when nil, failed writes are only
	// logged.
	Metrics Metrics
	State   *store.Store
	Images  *imagestore.Store
	// Driver runs the candidates, in Project.
	Driver  driver.Driver
	Project string
	// StateDir holds, in pipelines/NAME, each pipeline's mirror, checkouts and build
	// cache.
	StateDir string
	// Secrets seals the pipelines' definitions in the state; a key of its own, lost at
	// exit, when nil (tests).
	Secrets *secret.Key
	Log     *slog.Logger
}

// Manager keeps the recorded pipelines' workers: one per pipeline, under the context
// given to Start, each running its pipeline's runs one at a time, in commit order.
type Manager struct {
	opts    Options
	key     *secret.Key
	log     *slog.Logger
	metrics Metrics

	mu      sync.Mutex
	ctx     context.Context // set by Start
	workers map[string]*worker
	work    sync.WaitGroup
}

// worker runs one pipeline's runs.
type worker struct {
	def    api.Pipeline
	mirror *gitsource.Mirror
	wake   chan struct{}
	cancel context.CancelFunc
}

// New returns a manager; it starts nothing until Start.
func New(opts Options) *Manager {
	m := &Manager{opts: opts, workers: map[string]*worker{}, log: opts.Log, metrics: opts.Metrics}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.metrics == nil {
		m.metrics = logOnly{m.log}
	}
	if m.key = opts.Secrets; m.key == nil {
		raw := make([]byte, 32)
		rand.Read(raw)
		m.key, _ = secret.NewKey(raw)
	}
	return m
}

// Start marks the runs a stop interrupted, removes the candidates it left, starts a
// worker for every recorded pipeline, and then blocks until ctx ends, when it waits for
// the workers and the candidates' removal. It returns nil: what fails on the way is
// logged, and pipelines recorded later (Set) still start.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	if err := m.resume(ctx); err != nil {
		m.log.Error("starting pipelines", "err", err)
	}
	<-ctx.Done()
	m.work.Wait()
	return nil
}

// Set records pipelines and (re)starts the workers of those whose definition changed
// (once Start has been called; Start starts them otherwise). A definition holds secrets
// (the webhook secret, the variables, where secrets come from), so it is stored
// sealed. A name that is not a kiln name is refused before anything is recorded.
func (m *Manager) Set(ctx context.Context, defs []api.Pipeline) error {
	for _, p := range defs {
		if !spec.ValidName(p.Name) {
			return fmt.Errorf("pipeline name %q: use a lowercase letter, then lowercase letters, digits, '-', '_' or '.'", p.Name)
		}
	}
	for _, p := range defs {
		b, _ := json.Marshal(p)
		if err := m.opts.State.SetPipeline(ctx, p.Name, m.key.Seal(b)); err != nil {
			return err
		}
		m.startWorker(p)
	}
	return nil
}

// definitions returns the recorded pipelines' definitions, opened.
func (m *Manager) definitions(ctx context.Context) ([]api.Pipeline, error) {
	defs, err := m.opts.State.Pipelines(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Pipeline
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		b := []byte(defs[name])
		if strings.HasPrefix(defs[name], "sealed:") {
			if b, err = m.key.Open(defs[name]); err != nil {
				m.log.Error("a pipeline's definition cannot be read: apply its spec again", "pipeline", name, "err", err)
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

// startWorker starts def's worker, replacing a worker of an older definition.
func (m *Manager) startWorker(def api.Pipeline) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.workers[def.Name]; old != nil {
		if b1, b2 := mustJSON(old.def), mustJSON(def); b1 == b2 {
			return
		}
		old.cancel()
	}
	base := m.ctx
	if base == nil || base.Err() != nil {
		return // Start will start it, or the manager is stopping
	}
	ctx, cancel := context.WithCancel(base)
	w := &worker{def: def, wake: make(chan struct{}, 1), cancel: cancel,
		mirror: gitsource.New(filepath.Join(m.opts.StateDir, "pipelines", def.Name, "mirror"), def.Repo, def.Branch)}
	m.workers[def.Name] = w
	m.work.Add(1)
	go func() {
		defer m.work.Done()
		m.runWorker(ctx, w)
	}()
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// resume marks runs a stop interrupted, removes their candidates, and starts every
// recorded pipeline.
func (m *Manager) resume(ctx context.Context) error {
	runs, err := m.opts.State.InterruptRuns(ctx)
	if err != nil {
		return err
	}
	for _, r := range runs {
		m.event(r.Pipeline, "run %d of %s was interrupted by a stop", r.ID, shortSHA(r.Commit))
	}
	m.removeCandidates(ctx)
	defs, err := m.definitions(ctx)
	if err != nil {
		return err
	}
	for _, p := range defs {
		m.startWorker(p)
	}
	return nil
}

// worker returns the named pipeline's worker; nil when it has none (not recorded, or
// not started).
func (m *Manager) worker(name string) *worker {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.workers[name]
}

// event records a pipeline's event through the engine.
func (m *Manager) event(pipeline, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if m.opts.Engine == nil {
		m.log.Info(msg, "service", pipeline, "event", "pipeline")
		return
	}
	m.opts.Engine.Event(pipeline, "", "pipeline", msg)
}

// logOnly is the Metrics of a manager given none.
type logOnly struct{ log *slog.Logger }

func (logOnly) RunEnded(string, string)                  {}
func (logOnly) StageEnded(string, string, time.Duration) {}
func (l logOnly) StateWriteFailed(write string, err error, attrs ...any) {
	l.log.Error("writing the state", append([]any{"write", write, "err", err}, attrs...)...)
}

func shortSHA(s string) string { return s[:min(12, len(s))] }

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
