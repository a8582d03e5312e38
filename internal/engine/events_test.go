package engine

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/store"
)

// Every step of a rollout names the rollout it belongs to, so two rollouts of one
// service never share a step; each event has its subject's kind, step and tone from
// its type; a pipeline's events never reach a service's stream of the same name.
func TestEventsNameTheirRollout(t *testing.T) {
	onPaths(t, testEventsNameTheirRollout)
}

func testEventsNameTheirRollout(t *testing.T, sets bool) {
	ctx := context.Background()
	d := newSimDaemon(t)
	e, stop := d.startWith(func(o *Options) { o.Driver = d.runtime(sets) })
	defer stop()
	svc := d.service("web", 2)
	for i := range 2 {
		svc.Env = map[string]string{"N": string(rune('a' + i))} // a new server spec: a rollout
		if res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err != nil || !res.OK {
			t.Fatalf("apply %d: %v %+v", i, err, res)
		}
	}
	rollouts, err := d.state.Rollouts(ctx, "web")
	if err != nil || len(rollouts) != 2 {
		t.Fatalf("rollouts %+v, %v", rollouts, err)
	}
	for _, ro := range rollouts {
		evs, err := e.QueryEvents(ctx, store.EventQuery{RolloutID: ro.ID, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]int{}
		for _, ev := range evs {
			types[ev.Type]++
			info := api.EventTypeInfo(ev.Type)
			if ev.Kind != api.SubjectService || ev.Service != "web" || ev.Step != info.Step || ev.Tone != info.Tone {
				t.Errorf("rollout %d: event %+v, want kind service, step %q, tone %q", ro.ID, ev, info.Step, info.Tone)
			}
		}
		if types[api.EventRollout] != 1 || types[api.EventDeployed] != 1 || types[api.EventCreated] != 2 {
			t.Errorf("rollout %d has the steps %v, want one start, one done and its 2 servers created", ro.ID, types)
		}
	}

	e.event("web", "", api.EventPipeline, "run 1 of a pipeline named web started")
	evs, err := e.Events(ctx, "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == api.EventPipeline || ev.Kind != api.SubjectService {
			t.Errorf("the service's events hold %+v", ev)
		}
	}
	all, err := e.QueryEvents(ctx, store.EventQuery{Kind: api.SubjectPipeline, Limit: 10})
	if err != nil || len(all) != 1 || all[0].RolloutID != 0 {
		t.Errorf("pipeline events %+v, %v: want the one, in no rollout", all, err)
	}
}

// An apply that comes before Start has resumed what a stop interrupted (the daemon's
// API answers while the engine starts) is not taken for an interrupted rollout: it
// runs once and is not resumed, or rolled back, by Start.
func TestApplyBeforeStartIsNotResumed(t *testing.T) {
	ctx := context.Background()
	d := newSimDaemon(t)
	e := New(Options{State: d.state, Images: d.images, Driver: d.drv, Project: "sim", StateDir: d.dir, Log: d.log})
	res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{d.service("web", 2)}, User: "test", Detach: true})
	if err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.Start(sctx) }()
	<-e.Ready()
	eventually(t, 20*time.Second, "the rollout to end", func() bool {
		rs, err := d.state.RunningRollouts(ctx)
		return err == nil && len(rs) == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	evs, err := e.QueryEvents(ctx, store.EventQuery{Service: "web", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, ev := range evs {
		n[ev.Type]++
	}
	if n[api.EventRollout] != 1 || n[api.EventResumed] != 0 || n[api.EventRolledBack] != 0 || n[api.EventDeployed] != 1 {
		t.Errorf("events %v: want one rollout, deployed, and nothing resumed or rolled back", n)
	}
}

// A restart re-adopts the servers of a deployed revision without waiting out its
// min_healthy again: they served it before the stop.
func TestReadoptionSkipsMinHealthy(t *testing.T) {
	onPaths(t, testReadoptionSkipsMinHealthy)
}

func testReadoptionSkipsMinHealthy(t *testing.T, sets bool) {
	ctx := context.Background()
	d := newSimDaemon(t)
	drv := d.runtime(sets)
	e, stop := d.startWith(func(o *Options) { o.Driver = drv })
	svc := d.service("web", 2)
	svc.Update.Strategy = "rolling"
	if res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
	// A revision of new settings only: its servers are kept, no gate runs.
	svc.Update.MinHealthy = time.Hour
	if res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
	stop()
	e, _ = d.startWith(func(o *Options) { o.Driver = drv })
	eventually(t, 20*time.Second, "both servers back in rotation", func() bool {
		door := e.doors.Get("web")
		return door != nil && len(door.Upstreams()) == 2
	})
}
