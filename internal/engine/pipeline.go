package engine

import (
	"context"
	"errors"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
)

// What the engine offers pipelines (internal/pipeline), which run apart from it: they
// record their definitions through Apply (see SetPipelines) and deploy with Apply.

// Pipelines records the pipelines an apply names; *pipeline.Manager is one.
type Pipelines interface {
	// Set records defs (all or none, if one is invalid) and starts or restarts their
	// workers.
	Set(ctx context.Context, defs []api.Pipeline) error
}

// ErrNoPipelines means an apply names pipelines and the engine was given nothing to
// record them (SetPipelines).
var ErrNoPipelines = errors.New("this daemon runs no pipelines")

// SetPipelines makes p record the pipelines of every apply from now on, as part of the
// apply: after its checks, before its revisions. Call it before Start.
func (e *Engine) SetPipelines(p Pipelines) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pipelines = p
}

// setPipelines records the pipelines of an apply.
func (e *Engine) setPipelines(ctx context.Context, defs []api.Pipeline) error {
	if len(defs) == 0 {
		return nil
	}
	e.mu.Lock()
	p := e.pipelines
	e.mu.Unlock()
	if p == nil {
		return ErrNoPipelines
	}
	return p.Set(ctx, defs)
}

// Event records an event and passes it to subscribers; a record that cannot be written
// is logged and counted.
func (e *Engine) Event(service, serverID, typ, msg string) {
	e.event(service, serverID, typ, "%s", msg)
}

// SealSecrets resolves every secret template of services from sources, each value
// digested and sealed with the daemon's key, as Apply does.
func (e *Engine) SealSecrets(ctx context.Context, sources []api.SecretSource, services []api.Service) ([]api.Service, error) {
	return e.resolveSecrets(ctx, sources, services, true)
}

// ServerSpec is the spec of a server of svc outside any revision (a pipeline's
// candidate): in the engine's project, its sealed secrets opened.
func (e *Engine) ServerSpec(svc api.Service) (driver.ServerSpec, error) {
	return e.serverSpec(svc, 0)
}

// EnsureImage makes an image of the store available to the driver (a no-op for a
// driver that needs no loading); it blocks while the image is loaded.
func (e *Engine) EnsureImage(ctx context.Context, digest string) error {
	return e.ensureImage(ctx, digest)
}

// RunEnded counts a pipeline run that ended in state.
func (e *Engine) RunEnded(pipeline, state string) {
	e.metrics.runs.WithLabelValues(pipeline, state).Inc()
}

// StageEnded records how long a pipeline's stage took.
func (e *Engine) StageEnded(pipeline, stage string, took time.Duration) {
	e.metrics.stages.WithLabelValues(pipeline, stage).Observe(took.Seconds())
}

// StateWriteFailed logs and counts a write to the state that failed where its caller
// cannot act on the error; attrs say what it was about.
func (e *Engine) StateWriteFailed(write string, err error, attrs ...any) {
	e.stateWriteFailed(write, err, attrs...)
}
