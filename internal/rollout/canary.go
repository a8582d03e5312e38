// The canary strategy: a share of the requests to the new revision, step by step,
// each judged, then the new revision in place of the stable set.

package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/spec"
)

// CanaryDoor is a front door that can send a share of the requests to a canary.
type CanaryDoor interface {
	Door
	// Trial makes the servers at addrs the canary, out of the rotation, sent weight
	// percent of the requests (with stickiness sticky: see spec.Canary); weight 0
	// sends them none; nil addrs with weight 0 end the canary.
	Trial(ctx context.Context, addrs []string, weight float64, sticky string) error
}

// CanaryStep is a step of a canary, as Executor.Analyze judges it.
type CanaryStep struct {
	Index, Of int // the step's index (from 0) of how many
	Step      spec.CanaryStep
	// Weight is the share of requests (percent) the canary has in the step: a pause
	// keeps the one before.
	Weight  float64
	Servers []driver.Server // the canary's
	From    int64           // the stable set's revision
}

// ErrCanaryFailed means a canary failed the analysis of a step; ErrCanaryAborted,
// that it was aborted by hand.
var (
	ErrCanaryFailed  = errors.New("the canary failed its analysis")
	ErrCanaryAborted = errors.New("the canary was aborted")
)

// triesCanary reports whether t is rolled out as a canary: its strategy is, there are
// old servers to compare the new ones with (not on a first rollout, nor a converge of
// the deployed revision), and a judge. Otherwise a canary's servers start as a rolling
// update's do.
func (e *Executor) triesCanary(t Target, old []driver.Server) bool {
	c := t.Settings.Canary
	return t.Settings.Strategy == spec.StrategyCanary && c != nil && len(c.Steps) > 0 && len(old) > 0 && e.Analyze != nil
}

// canary is a canary rollout (t.Settings.Canary): for each step, the canary's servers
// (replicas × weight, at least 1) are started beside the old ones and gated, the door
// sends them the step's share, and Analyze judges the step. A failed or aborted step
// sends every request back to the old servers at once, then drains and destroys the
// canary's. After the last step the rest of the new set is started and gated, and the
// door switches to the new set in one change (the old drained, then destroyed).
//
// keep are servers of t that already run (a stopped rollout's canary): they are the
// canary's from the first step, gated again when the door has them not. Run calls it
// when triesCanary.
func (e *Executor) canary(ctx context.Context, cd CanaryDoor, t Target, spec driver.ServerSpec, keep, old []driver.Server) error {
	c := t.Settings.Canary
	servers := slices.Clone(keep)
	var ungated []driver.Server
	for _, s := range keep {
		if !cd.Has(s.Address) {
			ungated = append(ungated, s)
		}
	}
	var from int64 // the stable set's revision: the newest of the old servers'
	for _, s := range old {
		from = max(from, s.Spec.Revision)
	}
	weight := 0.0
	for i, st := range c.Steps {
		if err := e.canaryAborted(t, i); err != nil {
			return e.abortCanary(ctx, cd, t, servers, err)
		}
		if !st.Pause {
			weight = st.Weight
		}
		want := min(t.Replicas, max(1, int(math.Ceil(float64(t.Replicas)*weight/100))))
		if n := want - len(servers); n > 0 {
			created, err := e.create(ctx, t, spec, n)
			servers = append(servers, created...)
			ungated = append(ungated, created...)
			if err != nil {
				return e.abortCanary(ctx, cd, t, servers, err)
			}
		}
		if len(ungated) > 0 {
			if err := e.gate(ctx, t, ungated); err != nil {
				if ctx.Err() != nil {
					return err
				}
				return e.abortCanary(ctx, cd, t, servers, err)
			}
			for _, s := range ungated {
				e.remember(s)
			}
		}
		if err := cd.Trial(ctx, addresses(servers), weight, c.Sticky); err != nil {
			return e.abortCanary(ctx, cd, t, servers, fmt.Errorf("sending the canary its share: %w", err))
		}
		for _, s := range ungated {
			e.event(t.Service, string(s.ID), "admitted", "server %s is healthy and serves as the canary", s.Name)
		}
		ungated = nil
		what := fmt.Sprintf("for %s", st.Duration)
		if st.Pause {
			what = "until promoted (kiln promote " + t.Service + ")"
		}
		e.event(t.Service, "", "canary", "canary step %d of %d: %g%% of the requests to revision %d (%d of %d servers) %s",
			i+1, len(c.Steps), weight, t.Revision, len(servers), t.Replicas, what)
		err := e.Analyze(ctx, t, CanaryStep{Index: i, Of: len(c.Steps), Step: st, Weight: weight, Servers: servers, From: from})
		if err != nil {
			if ctx.Err() != nil {
				return err // a stop: the canary stays as it is, and the next Run tries it again
			}
			return e.abortCanary(ctx, cd, t, servers, err)
		}
	}
	// Promoted: the rest of the new set, then one switch.
	if n := t.Replicas - len(servers); n > 0 {
		created, err := e.create(ctx, t, spec, n)
		if err == nil {
			err = e.gate(ctx, t, created)
		}
		servers = append(servers, created...)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return e.abortCanary(ctx, cd, t, servers, err)
		}
	}
	if err := e.canaryAborted(t, len(c.Steps)); err != nil {
		return e.abortCanary(ctx, cd, t, servers, err)
	}
	e.event(t.Service, "", "gated", "%d servers of revision %d passed the health gate", len(servers), t.Revision)
	for _, s := range servers {
		e.remember(s)
	}
	if err := cd.Update(ctx, addresses(servers), addresses(old)); err != nil {
		return fmt.Errorf("switching the front door: %w", err)
	}
	if err := cd.Trial(ctx, nil, 0, ""); err != nil {
		return fmt.Errorf("ending the canary: %w", err)
	}
	e.event(t.Service, "", "switched", "front door switched to revision %d (%d servers)", t.Revision, len(servers))
	for _, s := range old {
		if err := e.retire(ctx, cd, t.Service, s, "replaced by revision "+itoa(t.Revision)); err != nil {
			return err
		}
	}
	return nil
}

// abortCanary ends a failed canary: every request goes back to the stable set at
// once, then the canary's servers are drained and destroyed; it returns err.
func (e *Executor) abortCanary(ctx context.Context, cd CanaryDoor, t Target, servers []driver.Server, err error) error {
	if e.CanaryFailing != nil {
		e.CanaryFailing(t, err)
	}
	cctx, cancel := e.withTimeout(context.WithoutCancel(ctx), time.Minute, ErrDriverTimeout)
	defer cancel()
	if terr := cd.Trial(cctx, addresses(servers), 0, ""); terr != nil {
		err = errors.Join(err, fmt.Errorf("sending the canary's share back to the stable set: %w", terr))
	}
	e.event(t.Service, "", "aborted", "canary of revision %d aborted, every request back to the stable set: %v", t.Revision, err)
	err = e.fail(ctx, cd, t, servers, err)
	if terr := cd.Trial(cctx, nil, 0, ""); terr != nil {
		err = errors.Join(err, fmt.Errorf("ending the canary: %w", terr))
	}
	return err
}

func (e *Executor) canaryAborted(t Target, step int) error {
	if e.CanaryAborted == nil {
		return nil
	}
	return e.CanaryAborted(t, step)
}

func addresses(servers []driver.Server) []string {
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		out = append(out, s.Address)
	}
	return out
}
