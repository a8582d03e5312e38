package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/gitsource"
	"github.com/kiln-build/kiln/internal/store"
)

// runWorker polls the source (if the pipeline polls) and runs queued runs in order,
// until ctx ends.
func (m *Manager) runWorker(ctx context.Context, w *worker) {
	var tick <-chan time.Time
	var changed <-chan struct{}
	if w.def.Poll > 0 {
		t := time.NewTicker(w.def.Poll)
		defer t.Stop()
		tick = t.C
		// A local repository is watched too: a commit is noticed at once, not at the
		// next poll.
		changed = gitsource.Watch(ctx, w.def.Repo, w.def.Branch)
	}
	lastErr := ""
	poll := func() {
		_, err := m.queue(ctx, w, "", "poll")
		err = redactErr(w.def, err)
		switch {
		case err == nil || errors.Is(err, store.ErrRunExists) || ctx.Err() != nil:
			lastErr = ""
		case err.Error() != lastErr: // say it once, not at every poll
			lastErr = err.Error()
			m.event(w.def.Name, "cannot read the source: %v", err)
		}
	}
	poll()
	for {
		for {
			run, err := m.opts.State.NextRun(ctx, w.def.Name)
			if err != nil {
				break
			}
			m.execute(ctx, w, run)
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

// queue fetches the source and queues a run of commit (the branch's head when "").
func (m *Manager) queue(ctx context.Context, w *worker, commit, trigger string) (store.Run, error) {
	c, err := w.mirror.Fetch(ctx, commit)
	if err != nil {
		return store.Run{}, err
	}
	run, err := m.opts.State.QueueRun(ctx, w.def.Name, c.Hash, c.Subject, trigger)
	if err != nil {
		return run, err
	}
	m.event(w.def.Name, "run %d queued for commit %s (%s, by %s)", run.ID, shortSHA(run.Commit), c.Subject, trigger)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return run, nil
}

// execute carries a run through its stages: bake, test, deploy, promote.
func (m *Manager) execute(ctx context.Context, w *worker, run store.Run) {
	def := w.def
	defer func() {
		// A commit must never bring the daemon (and every front door) down: a panic is
		// the run's failure.
		if p := recover(); p != nil {
			m.log.Error("a pipeline run panicked", "pipeline", def.Name, "run", run.ID, "panic", p, "stack", string(debug.Stack()))
			detail := fmt.Sprintf("internal error: %v", p)
			m.finishRun(ctx, run, store.RunFailed, detail)
			m.metrics.RunEnded(def.Name, string(store.RunFailed))
			m.event(def.Name, "run %d of %s failed: %s", run.ID, shortSHA(run.Commit), detail)
		}
	}()
	// Candidates that passed are torn down while the deploy runs; the run is over only
	// once they are gone.
	var teardown sync.WaitGroup
	defer teardown.Wait()
	m.event(def.Name, "run %d of %s started", run.ID, shortSHA(run.Commit))
	services, err := m.stage(ctx, run, "bake", func(log io.Writer) ([]api.Service, error) { return m.bakeCommit(ctx, w, run, log) })
	if err == nil {
		_, err = m.stage(ctx, run, "test", func(log io.Writer) ([]api.Service, error) {
			return nil, m.testCandidates(ctx, def, services, &teardown, log)
		})
	}
	if err == nil {
		_, err = m.stage(ctx, run, "deploy", func(log io.Writer) ([]api.Service, error) {
			return nil, m.deployRun(ctx, def, run, pick(services, def.Services), log)
		})
	}
	for _, name := range def.Promote {
		if err != nil {
			break
		}
		_, err = m.stage(ctx, run, "promote:"+name, func(log io.Writer) ([]api.Service, error) {
			return nil, m.deployRun(ctx, def, run, pick(services, []string{name}), log)
		})
	}
	teardown.Wait()
	if ctx.Err() != nil {
		return // InterruptRuns marks it on the next start
	}
	state, detail := store.RunSucceeded, ""
	if err != nil {
		state, detail = store.RunFailed, redactErr(def, err).Error()
	}
	m.finishRun(ctx, run, state, detail)
	m.metrics.RunEnded(def.Name, string(state))
	m.event(def.Name, "run %d of %s %s%s", run.ID, shortSHA(run.Commit), state, suffix(detail))
}

// finishRun records the end of a run; a failure is logged and counted.
func (m *Manager) finishRun(ctx context.Context, run store.Run, state store.RunState, detail string) {
	if err := m.opts.State.FinishRun(context.WithoutCancel(ctx), run.ID, state, detail); err != nil {
		m.metrics.StateWriteFailed("run", err, "pipeline", run.Pipeline, "run", run.ID, "state", state, "detail", detail)
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
func (m *Manager) stage(ctx context.Context, run store.Run, name string, fn func(io.Writer) ([]api.Service, error)) ([]api.Service, error) {
	if err := m.opts.State.StartStage(ctx, run.ID, name); err != nil {
		m.metrics.StateWriteFailed("stage", err, "pipeline", run.Pipeline, "run", run.ID, "stage", name)
	}
	var log bytes.Buffer
	start := time.Now()
	out, err := func() (out []api.Service, err error) {
		defer func() {
			if p := recover(); p != nil {
				m.log.Error("a pipeline stage panicked", "pipeline", run.Pipeline, "run", run.ID, "stage", name, "panic", p, "stack", string(debug.Stack()))
				err = fmt.Errorf("internal error: %v", p)
			}
		}()
		return fn(&log)
	}()
	state := store.StageSucceeded
	if err != nil {
		state = store.StageFailed
		fmt.Fprintf(&log, "error: %v\n", err)
	}
	if err := m.opts.State.FinishStage(context.WithoutCancel(ctx), run.ID, name, state, log.String()); err != nil {
		m.metrics.StateWriteFailed("stage", err, "pipeline", run.Pipeline, "run", run.ID, "stage", name, "state", state)
	}
	stageKind, _, _ := strings.Cut(name, ":")
	m.metrics.StageEnded(run.Pipeline, stageKind, time.Since(start))
	m.event(run.Pipeline, "run %d: %s %s in %s", run.ID, name, state, time.Since(start).Round(10*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
