package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/store"
)

// deployRun applies services as a new revision and waits for the outcome; while
// another rollout of one of them runs, it waits its turn rather than fail.
func (m *Manager) deployRun(ctx context.Context, def api.Pipeline, run store.Run, services []api.Service, log io.Writer) error {
	req := api.ApplyRequest{Services: services, Commit: run.Commit,
		Source: fmt.Sprintf("pipeline %s, run %d", def.Name, run.ID), User: "pipeline " + def.Name}
	res, err := m.opts.Engine.Apply(ctx, req)
	for waited := false; errors.Is(err, store.ErrRolloutInProgress); res, err = m.opts.Engine.Apply(ctx, req) {
		if !waited {
			fmt.Fprintf(log, "waiting for the rollout in progress: %v\n", err)
			waited = true
		}
		sleep(ctx, time.Second)
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
