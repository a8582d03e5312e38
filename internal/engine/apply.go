package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/frontdoor"
	"github.com/kiln-build/kiln/internal/plan"
	"github.com/kiln-build/kiln/internal/rollout"
	"github.com/kiln-build/kiln/internal/store"
)

// Plan computes what applying req would do. Text is the plan as kiln plan prints it.
func (e *Engine) Plan(ctx context.Context, req api.PlanRequest) (plan.Plan, error) {
	if err := e.checkRuntime(req.Runtime); err != nil {
		return plan.Plan{}, err
	}
	services, err := e.resolveSecrets(ctx, req.Secrets, req.Services, false)
	if err != nil {
		return plan.Plan{}, err
	}
	observed, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project})
	if err != nil {
		return plan.Plan{}, fmt.Errorf("listing servers: %w", err)
	}
	var desired []plan.Desired
	owned := map[string]bool{}
	for _, svc := range services {
		owned[svc.Name] = true
		rev := int64(1)
		var settings []string
		if sv, err := e.opts.State.Service(ctx, svc.Name); err == nil {
			rev = sv.Current
			if cur, err := e.opts.State.Revision(ctx, svc.Name, sv.Current); err == nil && !sameService(cur, svc) {
				rev = e.nextRevision(ctx, svc.Name)
				if old, err := decodeService(cur); err == nil {
					settings = settingChanges(old, svc)
				}
			}
		}
		if err := e.checkStrategy(svc); err != nil {
			return plan.Plan{}, err
		}
		spec, err := e.plannedSpec(svc, rev)
		if err != nil {
			return plan.Plan{}, err
		}
		desired = append(desired, plan.Desired{Service: svc.Name, Revision: rev, Spec: spec, Replicas: svc.Replicas, Settings: settings, Rollout: canaryPlan(svc)})
	}
	if req.Prune {
		services, err := e.opts.State.Services(ctx)
		if err != nil {
			return plan.Plan{}, err
		}
		for _, sv := range services {
			owned[sv.Name] = true
		}
	}
	observed = slices.DeleteFunc(observed, func(s driver.Server) bool { return !owned[s.Service] })
	p := plan.Compute(desired, observed)
	e.packageChanges(&p)
	return p, nil
}

// packageChanges says, for each service whose servers are replaced by servers of
// another image, which OS packages change between the two (from their SBOMs), when
// the old servers run one image.
func (e *Engine) packageChanges(p *plan.Plan) {
	if e.opts.Images == nil {
		return
	}
	for i, s := range p.Services {
		if s.Spec == nil {
			continue
		}
		var old []string
		for _, c := range s.Changes {
			if c.Action == plan.Replace && c.Old != nil && c.Old.Spec.Image != s.Spec.Image && !slices.Contains(old, c.Old.Spec.Image) {
				old = append(old, c.Old.Spec.Image)
			}
		}
		if len(old) == 1 {
			p.Services[i].Packages = e.opts.Images.ImagePackageChanges(old[0], s.Spec.Image)
		}
	}
}

func (e *Engine) nextRevision(ctx context.Context, service string) int64 {
	revs, _ := e.opts.State.Revisions(ctx, service)
	if len(revs) == 0 {
		return 1
	}
	return revs[0].Number + 1
}

// sameService reports whether a revision records exactly svc (secrets compared by
// their digests).
func sameService(r store.Revision, svc api.Service) bool {
	var recorded api.Service
	if json.Unmarshal([]byte(r.Spec), &recorded) != nil {
		return false
	}
	return comparable(recorded) == comparable(svc)
}

// check refuses a request that cannot be carried out, before anything is recorded. It
// returns the front doors the services need and do not have yet, checked but not in
// use: the caller accepts each once its service's revision is recorded; the others
// are dropped (a pending door holds nothing).
func (e *Engine) check(ctx context.Context, services []api.Service) (_ map[string]*frontdoor.Door, err error) {
	pending := map[string]*frontdoor.Door{}
	var current []api.Service
	if names, err := e.serviceNames(ctx); err == nil {
		for _, name := range names {
			if r, ok := e.currentRevision(ctx, name); ok {
				var svc api.Service
				if json.Unmarshal([]byte(r.Spec), &svc) == nil {
					current = append(current, svc)
				}
			}
		}
	}
	if err := routeConflicts(current, services); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, svc := range services {
		if seen[svc.Name] {
			return nil, fmt.Errorf("service %q is given twice", svc.Name)
		}
		seen[svc.Name] = true
		h, err := v1.NewHash(svc.Image)
		if err != nil {
			return nil, fmt.Errorf("service %s: image %q is not a digest", svc.Name, svc.Image)
		}
		if _, err := e.opts.Images.Image(h); err != nil {
			return nil, fmt.Errorf("service %s: image %s is not in the image store: bake it first (kiln bake), or use a digest that `kiln images` lists", svc.Name, svc.Image)
		}
		if err := validateService(svc); err != nil {
			return nil, err
		}
		if err := e.checkStrategy(svc); err != nil {
			return nil, err
		}
		if r, err := e.opts.State.RunningRollout(ctx, svc.Name); err == nil {
			return nil, fmt.Errorf("%w: service %s, revision %d → %d, started %s by %s; wait for it (kiln status) and apply again",
				store.ErrRolloutInProgress, svc.Name, r.From, r.To, r.Started.Format("15:04:05"), r.Owner)
		}
		d, err := e.pendingDoor(ctx, svc)
		if err != nil {
			return nil, err
		}
		if d != nil {
			pending[svc.Name] = d
		}
	}
	return pending, nil
}

// Apply records a new revision of every service in req whose settings changed and
// rolls each out, in parallel. Unless req.Detach, it returns when every outcome is
// known. A service whose settings did not change is converged (healed) if its servers
// drifted, without a new revision.
func (e *Engine) Apply(ctx context.Context, req api.ApplyRequest) (api.Result, error) {
	return e.apply(ctx, req, nil)
}

// apply is Apply; a new revision it records says it was made by rb when rb is not nil
// (a rollback applies one service).
func (e *Engine) apply(ctx context.Context, req api.ApplyRequest, rb *api.RollbackRecord) (api.Result, error) {
	if err := e.checkRuntime(req.Runtime); err != nil {
		return api.Result{}, err
	}
	services, err := e.resolveSecrets(ctx, req.Secrets, req.Services, true)
	if err != nil {
		return api.Result{}, err
	}
	req.Services = services
	wait, err := e.startApply(ctx, req, rb)
	if err != nil {
		return api.Result{}, err
	}
	return e.collect(wait, req.Detach), nil
}

// startApply checks req, records it and starts its rollouts, returning a function that
// waits for each outcome. A front door it opened is in use only once its service's
// revision is recorded: a request that fails leaves no other listening. The revisions
// it records say they were made by rb when it is not nil.
func (e *Engine) startApply(ctx context.Context, req api.ApplyRequest, rb *api.RollbackRecord) ([]func() api.ServiceResult, error) {
	e.applying.Lock()
	defer e.applying.Unlock()
	pending, err := e.check(ctx, req.Services)
	if err != nil {
		return nil, err
	}
	accept := func(service string) {
		if d := pending[service]; d != nil {
			delete(pending, service)
			if err := e.doors.Accept(e.base(ctx), service, d); err != nil {
				e.log.Error("the front door could not be configured", "service", service, "error", err)
			}
		}
	}
	if err := e.setPipelines(ctx, req.Pipelines); err != nil {
		return nil, err
	}
	var wait []func() api.ServiceResult
	for _, svc := range req.Services {
		prev, hasPrev := e.currentRevision(ctx, svc.Name)
		if hasPrev && sameService(prev, svc) {
			p, err := e.Plan(ctx, api.PlanRequest{Services: []api.Service{svc}})
			if err != nil {
				return nil, err
			}
			if !p.HasChanges() {
				accept(svc.Name)
				wait = append(wait, done(api.ServiceResult{Service: svc.Name, Revision: prev.Number, Outcome: string(prev.Outcome), URL: URL(svc.Listen)}))
				continue
			}
			r, err := e.startRollout(ctx, svc.Name, prev.Number, prev.Number, svc.Update.Strategy)
			if err != nil {
				return nil, err
			}
			accept(svc.Name)
			wait = append(wait, e.goRollout(r, prev))
			continue
		}
		spec, err := encodeSpec(svc, rb)
		if err != nil {
			return nil, err
		}
		rev, err := e.opts.State.CreateRevision(ctx, store.Revision{
			Service: svc.Name, Image: svc.Image, ImageName: svc.ImageName, Spec: spec,
			Source: req.Source, AppliedBy: req.User, Commit: req.Commit,
		})
		if err != nil {
			return nil, err
		}
		from := int64(0)
		if hasPrev {
			from = prev.Number
		}
		r, err := e.startRollout(ctx, svc.Name, from, rev.Number, svc.Update.Strategy)
		if err != nil {
			return nil, err
		}
		if err := e.opts.State.SetCurrent(ctx, svc.Name, rev.Number); err != nil {
			// The rollout will not run: it must not stay running, and refuse the next.
			e.setOutcome(ctx, svc.Name, rev.Number, store.OutcomeFailed, "not rolled out: "+err.Error())
			e.finishRollout(ctx, r, store.RolloutFailed, "not started: "+err.Error())
			return nil, fmt.Errorf("recording revision %d of %s as current: %w", rev.Number, svc.Name, err)
		}
		accept(svc.Name)
		e.event(svc.Name, "", "revision", "revision %d recorded (image %s@%s) by %s", rev.Number, svc.ImageName, short(svc.Image), req.User)
		wait = append(wait, e.goRollout(r, rev))
	}
	if req.Prune {
		if err := e.pruneServices(ctx, req.Services); err != nil {
			return nil, err
		}
	}
	return wait, nil
}

func done(r api.ServiceResult) func() api.ServiceResult { return func() api.ServiceResult { return r } }

func (e *Engine) collect(wait []func() api.ServiceResult, detach bool) api.Result {
	res := api.Result{OK: true}
	for _, w := range wait {
		var r api.ServiceResult
		if detach {
			r = api.ServiceResult{Outcome: string(store.OutcomePending)}
			// The rollout goes on; report what was started.
			go w()
		} else {
			r = w()
		}
		if r.Outcome != string(store.OutcomeDeployed) && r.Outcome != "destroyed" && !detach {
			res.OK = false
		}
		res.Services = append(res.Services, r)
	}
	return res
}

func (e *Engine) currentRevision(ctx context.Context, service string) (store.Revision, bool) {
	sv, err := e.opts.State.Service(ctx, service)
	if err != nil {
		return store.Revision{}, false
	}
	r, err := e.opts.State.Revision(ctx, service, sv.Current)
	return r, err == nil
}

func (e *Engine) startRollout(ctx context.Context, service string, from, to int64, strategy string) (store.Rollout, error) {
	r, err := e.opts.State.StartRollout(ctx, store.Rollout{Service: service, From: from, To: to, Strategy: strategy, Owner: e.opts.Owner})
	if err == nil {
		e.mu.Lock()
		e.own[r.ID] = true // not one for Start to resume (see resume)
		e.mu.Unlock()
	}
	return r, err
}

// goRollout runs a recorded rollout in the background, under the engine's context, and
// returns a function that waits for its outcome.
func (e *Engine) goRollout(r store.Rollout, rev store.Revision) func() api.ServiceResult {
	e.mu.Lock()
	ctx := e.ctx
	e.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	var res api.ServiceResult
	var once sync.WaitGroup
	once.Add(1)
	e.work.Add(1)
	go func() {
		defer e.work.Done()
		defer once.Done()
		res = e.runRollout(ctx, r, rev)
	}()
	return func() api.ServiceResult { once.Wait(); return res }
}

// runRollout carries out a rollout and records its outcome; on failure with
// auto_rollback it rolls back to the revision the rollout started from.
func (e *Engine) runRollout(ctx context.Context, r store.Rollout, rev store.Revision) api.ServiceResult {
	res := api.ServiceResult{Service: r.Service, Revision: rev.Number, Changed: true}
	defer e.inRollout(r)()
	defer func() { e.endTrial(r.Service, rev.Number, store.Outcome(res.Outcome)) }()
	start := time.Now()
	defer func() {
		if res.Outcome != string(store.OutcomePending) {
			e.metrics.rollouts.WithLabelValues(r.Service, res.Outcome).Observe(time.Since(start).Seconds())
		}
	}()
	svc, err := decodeService(rev)
	if err == nil {
		res.URL = URL(svc.Listen)
		e.event(r.Service, "", "rollout", "rolling out revision %d (%s, %d replicas)", rev.Number, svc.Update.Strategy, svc.Replicas)
		err = e.converge(ctx, rev, false)
	}
	if ctx.Err() != nil {
		// kiln is stopping: the rollout stays "running" and resumes on the next start.
		res.Outcome, res.Detail = string(store.OutcomePending), "interrupted: kiln stopped; it resumes when kiln starts"
		e.event(r.Service, "", api.EventInterrupted, "the rollout to revision %d was interrupted by a stop: it resumes when kiln starts", rev.Number)
		return res
	}
	if err == nil {
		// The event first: a stop before the rollout is recorded as finished resumes it
		// (and records the event again) rather than lose it.
		e.event(r.Service, "", "deployed", "revision %d is deployed", rev.Number)
		e.setOutcome(ctx, r.Service, rev.Number, store.OutcomeDeployed, "")
		e.finishRollout(ctx, r, store.RolloutSucceeded, "")
		e.recovered(r.Service)
		res.Outcome = string(store.OutcomeDeployed)
		return res
	}
	e.event(r.Service, "", "failed", "rollout of revision %d failed: %v", rev.Number, err)
	res.Detail = err.Error()
	if r.From == 0 { // nothing to roll back to: the service is degraded until fixed
		e.degrade(r.Service, e.state(r.Service), fmt.Sprintf("revision %d failed: %v", rev.Number, err))
	}
	// A canary that failed is rolled back whatever auto_rollback says: its stable set
	// never stopped serving, and the controller must not heal towards the revision
	// its analysis refused.
	canaryFailed := errors.Is(err, rollout.ErrCanaryFailed) || errors.Is(err, rollout.ErrCanaryAborted)
	if (!svc.Update.AutoRollback && !canaryFailed) || r.From == 0 || r.From == rev.Number {
		e.setOutcome(ctx, r.Service, rev.Number, store.OutcomeFailed, err.Error())
		e.finishRollout(ctx, r, store.RolloutFailed, err.Error())
		res.Outcome = string(store.OutcomeFailed)
		return res
	}
	prev, perr := e.opts.State.Revision(ctx, r.Service, r.From)
	if perr == nil {
		e.event(r.Service, "", "rollback", "rolling back to revision %d", prev.Number)
		// Not recorded as current, the revision would not be kept by the controller
		// (or a restart): the rollback fails.
		if perr = e.opts.State.SetCurrent(ctx, r.Service, prev.Number); perr != nil {
			perr = fmt.Errorf("recording revision %d as current: %w", prev.Number, perr)
		} else {
			perr = e.converge(ctx, prev, false)
		}
	}
	if perr != nil {
		detail := fmt.Sprintf("%v; rolling back to revision %d also failed: %v", err, r.From, perr)
		e.setOutcome(ctx, r.Service, rev.Number, store.OutcomeFailed, detail)
		e.finishRollout(ctx, r, store.RolloutFailed, detail)
		e.event(r.Service, "", "failed", "rollback to revision %d failed: %v", r.From, perr)
		res.Outcome, res.Detail = string(store.OutcomeFailed), detail
		return res
	}
	e.setOutcome(ctx, r.Service, rev.Number, store.OutcomeRolledBack, err.Error())
	e.finishRollout(ctx, r, store.RolloutRolledBack, err.Error())
	e.event(r.Service, "", "rolled_back", "revision %d failed and was rolled back; revision %d is serving", rev.Number, prev.Number)
	res.Outcome = string(store.OutcomeRolledBack)
	return res
}

// Rollback records a new revision with the settings of revision req.To (or, when it is
// 0, of rollbackTarget's: the last deployed revision before the current one with other
// settings) and rolls it out. The revision records the rollback (History's
// Revision.Rollback).
func (e *Engine) Rollback(ctx context.Context, service string, req api.RollbackRequest) (api.Result, error) {
	cur, ok := e.currentRevision(ctx, service)
	if !ok {
		return api.Result{}, fmt.Errorf("service %q: %w", service, store.ErrNotFound)
	}
	var to store.Revision
	if req.To != 0 {
		r, err := e.opts.State.Revision(ctx, service, req.To)
		if err != nil {
			return api.Result{}, err
		}
		to = r
	} else {
		revs, err := e.opts.State.Revisions(ctx, service)
		if err != nil {
			return api.Result{}, err
		}
		if to, err = rollbackTarget(revs, cur); err != nil {
			return api.Result{}, fmt.Errorf("service %s: %w to roll back to (see kiln history %s)", service, err, service)
		}
	}
	svc, err := decodeService(to)
	if err != nil {
		return api.Result{}, err
	}
	h, _ := v1.NewHash(svc.Image)
	if _, err := e.opts.Images.Image(h); err != nil {
		return api.Result{}, fmt.Errorf("revision %d's image %s is no longer in the image store (it was pruned): bake it again", to.Number, short(svc.Image))
	}
	rb := api.RollbackRecord{To: to.Number, By: req.User}
	return e.apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, Source: to.Source, Commit: to.Commit,
		User: rollbackAppliedBy(rb), Detach: req.Detach}, &rb)
}

// Destroy removes a service: its servers (drained first), its front door, and its
// desired state. Its history stays.
func (e *Engine) Destroy(ctx context.Context, service string) (api.Result, error) {
	if _, err := e.opts.State.Service(ctx, service); err != nil {
		return api.Result{}, err
	}
	if r, err := e.opts.State.RunningRollout(ctx, service); err == nil {
		return api.Result{}, fmt.Errorf("%w: revision %d → %d; wait for it to finish", store.ErrRolloutInProgress, r.From, r.To)
	}
	st := e.state(service) // no heal while the service is being destroyed
	st.lock.Lock()
	defer st.lock.Unlock()
	servers, err := e.opts.Driver.List(ctx, driver.Selector{Project: e.opts.Project, Service: service})
	if err != nil {
		return api.Result{}, err
	}
	d, derr := e.doors.Remove(ctx, service)
	e.mu.Lock()
	delete(e.targets, service)
	e.mu.Unlock()
	for _, s := range servers {
		if d != nil && d.Has(s.Address) {
			d.Update(ctx, nil, []string{s.Address})
		}
	}
	// On a runtime of sets, a member destroyed alone would be replaced by its set: the
	// sets go first, with their members; what is left is no set's.
	var errs []error
	if derr != nil {
		errs = append(errs, fmt.Errorf("closing the front door of %s: %w", service, derr))
	}
	if sd := e.exec.SetDriver(); sd != nil {
		sets, err := sd.Sets(ctx, driver.Selector{Project: e.opts.Project, Service: service})
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the sets of %s: %w", service, err))
			servers = nil // its members are not destroyed alone
		}
		for _, set := range sets {
			if err := sd.DeleteSet(ctx, set.Ref); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, s := range e.exec.Admitted(service) { // a service of the name later is another
		e.exec.Forget(s.ID)
	}
	for _, s := range servers {
		if err := e.opts.Driver.Destroy(ctx, s.ID); err != nil { // nil if its set took it
			errs = append(errs, err)
			continue
		}
		e.event(service, string(s.ID), "destroyed", "server %s destroyed: service destroyed", s.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return api.Result{}, err
	}
	if err := e.opts.State.DeleteService(ctx, service); err != nil {
		return api.Result{}, err
	}
	e.event(service, "", "destroyed", "service %s destroyed (%d servers)", service, len(servers))
	return api.Result{OK: true, Services: []api.ServiceResult{{Service: service, Outcome: "destroyed", Changed: true}}}, nil
}

// pruneServices destroys the services kiln runs that keep are not among.
func (e *Engine) pruneServices(ctx context.Context, keep []api.Service) error {
	services, err := e.opts.State.Services(ctx)
	if err != nil {
		return err
	}
	for _, sv := range services {
		if slices.ContainsFunc(keep, func(s api.Service) bool { return s.Name == sv.Name }) {
			continue
		}
		if _, err := e.Destroy(ctx, sv.Name); err != nil {
			return err
		}
	}
	return nil
}

// ErrOtherRuntime: a request's spec runs on another runtime than the daemon's.
var ErrOtherRuntime = errors.New("the spec names another runtime than the daemon's")

// checkRuntime refuses a request whose spec names a runtime the daemon does not run
// servers on ("" names none).
func (e *Engine) checkRuntime(want string) error {
	if have := e.opts.Driver.Name(); want != "" && want != have {
		return fmt.Errorf("%w: the spec's runtime is %s, but this daemon runs servers on %s; stop it (kiln stop) and start it again (kiln up or kiln serve) to serve the spec on %s",
			ErrOtherRuntime, want, have, want)
	}
	return nil
}
