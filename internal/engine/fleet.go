package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/store"
)

// The use cases that read: status, history, events, logs.

// Status reports every service: its revision, its servers as the runtime reports them,
// and which are in rotation.
func (e *Engine) Status(ctx context.Context) (api.Status, error) {
	services, err := e.opts.State.Services(ctx)
	if err != nil {
		return api.Status{}, err
	}
	observed, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project})
	if err != nil {
		return api.Status{}, err
	}
	st := api.Status{Services: []api.ServiceStatus{}}
	for _, sv := range services {
		rev, err := e.opts.State.Revision(ctx, sv.Name, sv.Current)
		if err != nil {
			return st, err
		}
		svc, err := decodeService(rev)
		if err != nil {
			return st, err
		}
		ss := api.ServiceStatus{Name: sv.Name, Revision: rev.Number, Image: svc.Image, ImageName: svc.ImageName,
			URL: URL(svc.Listen), Replicas: svc.Replicas, Servers: []api.Server{}, HealthPath: svc.Health.HTTP}
		cs := e.state(sv.Name)
		d := e.doors.Get(sv.Name)
		e.mu.Lock()
		for _, s := range observed {
			if s.Service != sv.Name {
				continue
			}
			in := d != nil && d.Has(s.Address)
			health := "waiting"
			switch {
			case e.exec.Retiring(s.ID):
				health = "stopping" // out of rotation, being stopped and removed
			case e.monitor.Failures(sv.Name, s.Address) > 0:
				health = "failing"
			case in:
				health = "healthy"
			}
			canary := d != nil && d.InCanary(s.Address)
			if in && !canary { // the canary's servers are beside the replicas, not of them
				ss.Healthy++
			}
			ss.Servers = append(ss.Servers, api.Server{ID: string(s.ID), Name: s.Name, Revision: s.Revision,
				Address: s.Address, Node: s.Node, State: string(s.State), InService: in, Created: s.Created,
				SpecHash: s.SpecHash, Health: health, Drift: cs.drifted[s.ID], Canary: canary})
		}
		e.mu.Unlock()
		if r, err := e.opts.State.RunningRollout(ctx, sv.Name); err == nil {
			ss.Rollout = fmt.Sprintf("revision %d → %d (%s)", r.From, r.To, r.Strategy)
		}
		ss.Canary = e.canaryStatus(sv.Name)
		e.mu.Lock()
		ss.Drift = cs.lastDrift
		switch {
		case ss.Rollout != "":
			ss.State = "rolling out"
		case cs.degraded:
			ss.State, ss.Cause = "degraded", cs.cause
		case ss.Healthy < ss.Replicas:
			ss.State = "healing"
		default:
			ss.State = "healthy"
		}
		if ss.State == "healing" {
			ss.Cause = cs.cause
		}
		e.mu.Unlock()
		st.Services = append(st.Services, ss)
	}
	return st, nil
}

// History returns a service's revisions, newest first, the revision a rollback with no
// revision given goes back to marked (none once the service is destroyed).
func (e *Engine) History(ctx context.Context, service string) ([]api.Revision, error) {
	sv, err := e.opts.State.Service(ctx, service)
	current := int64(-1)
	if err == nil {
		current = sv.Current
	}
	revs, err := e.opts.State.Revisions(ctx, service)
	if err != nil {
		return nil, err
	}
	if len(revs) == 0 {
		return nil, fmt.Errorf("service %q has no revisions: %w", service, store.ErrNotFound)
	}
	target := int64(0)
	if i := slices.IndexFunc(revs, func(r store.Revision) bool { return r.Number == current }); i >= 0 {
		if t, err := rollbackTarget(revs, revs[i]); err == nil {
			target = t.Number
		}
	}
	out := []api.Revision{}
	for _, r := range revs {
		out = append(out, api.Revision{Number: r.Number, Image: r.Image, ImageName: r.ImageName, Created: r.Created,
			AppliedBy: r.AppliedBy, Commit: r.Commit, Outcome: string(r.Outcome), Detail: r.Detail, Current: r.Number == current,
			Rollback: rollbackOf(r), RollbackTarget: r.Number == target})
	}
	return out, nil
}

// KeptImages are the image digests no prune may remove: those of recent and current
// revisions.
func (e *Engine) KeptImages(ctx context.Context) (map[string]bool, error) {
	return e.opts.State.KeptImages(ctx, 10)
}

func short(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return h[:12]
	}
	return d
}

// Events returns recorded events after since, oldest first.
func (e *Engine) Events(ctx context.Context, service string, since int64) ([]api.Event, error) {
	evs, err := e.opts.State.Events(ctx, service, since, 1000)
	if err != nil {
		return nil, err
	}
	out := []api.Event{}
	for _, ev := range evs {
		if service != "" && ev.Kind == api.SubjectPipeline {
			continue // a pipeline of the service's name is another subject
		}
		out = append(out, apiEvent(ev))
	}
	return out, nil
}

// Logs writes what the service's servers print to w, each line prefixed with the
// server's name; with follow, until ctx ends.
func (e *Engine) Logs(ctx context.Context, service string, follow bool, w io.Writer) error {
	logger, ok := e.opts.Driver.(driver.Logger)
	if !ok {
		return fmt.Errorf("the %s driver cannot show logs", e.opts.Driver.Name())
	}
	servers, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project, Service: service})
	if err != nil {
		return err
	}
	if len(servers) == 0 {
		return fmt.Errorf("service %q has no servers: %w", service, store.ErrNotFound)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		rc, err := logger.Logs(ctx, s.ID, follow)
		if err != nil {
			continue // it may have just been destroyed
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rc.Close()
			sc := bufio.NewScanner(rc)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				mu.Lock()
				fmt.Fprintf(w, "%s | %s\n", s.Name, sc.Text())
				if f, ok := w.(interface{ Flush() }); ok {
					f.Flush()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return nil
}
