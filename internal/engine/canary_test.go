package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
)

func canaryService(svc api.Service, steps ...api.CanaryStep) api.Service {
	svc.Update.Strategy = "canary"
	svc.Update.Canary = &api.Canary{Steps: steps, Analysis: api.Analysis{Interval: 100 * time.Millisecond, MinRequests: 1000}}
	return svc
}

// canaryOf waits until status shows the canary of revision at step, and returns it.
func waitTrial(t *testing.T, e *Engine, revision int64, step int) api.CanaryStatus {
	t.Helper()
	var c api.CanaryStatus
	eventually(t, 30*time.Second, "the canary's step", func() bool {
		st, err := e.Status(t.Context())
		if err != nil || len(st.Services) != 1 || st.Services[0].Canary == nil {
			return false
		}
		c = *st.Services[0].Canary
		return c.Revision == revision && c.Step == step && c.Outcome == "" && c.Decision != "starting"
	})
	return c
}

// A canary is promoted and aborted by hand, on the simulated runtime: without
// requests it is never judged, so only a promote moves it on.
func TestCanaryPromoteAbort(t *testing.T) {
	d := newSimDaemon(t)
	e, _ := d.startWith(func(o *Options) { o.Driver = oneByOne{d.drv} })
	ctx := t.Context()
	base := d.service("web", 2)
	steps := []api.CanaryStep{{Weight: 10, Duration: time.Second}, {Pause: true}}
	if res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{canaryService(base, steps...)}, User: "test"}); err != nil || !res.OK {
		t.Fatalf("first apply: %v %+v", err, res)
	}
	if err := e.Promote(ctx, "web", "test"); !errors.Is(err, ErrNoCanary) {
		t.Errorf("Promote with no canary = %v, want ErrNoCanary", err)
	}

	// Revision 2: its first step cannot be judged (no request); promoted twice.
	v2 := canaryService(base, steps...)
	v2.Env = map[string]string{"V": "2"}
	res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{v2}, User: "test", Detach: true})
	if err != nil || !res.OK {
		t.Fatalf("apply of revision 2: %v %+v", err, res)
	}
	c := waitTrial(t, e, 2, 1)
	if c.Weight != 10 || c.Servers != 1 || c.From != 1 || c.Steps != 2 {
		t.Errorf("step 1: %+v", c)
	}
	eventually(t, 10*time.Second, "a judgement", func() bool {
		c = waitTrial(t, e, 2, 1)
		return c.Decision == "wait" && len(c.Why) == 1 && strings.Contains(c.Why[0], "0 of the 1000 requests")
	})
	// A double click: the second promote is not carried over to the pause.
	for range 2 {
		if err := e.Promote(ctx, "web", "test"); err != nil {
			t.Fatal(err)
		}
	}
	c = waitTrial(t, e, 2, 2)
	if !c.Pause || c.Weight != 10 {
		t.Errorf("the pause step: %+v", c)
	}
	time.Sleep(300 * time.Millisecond) // three analysis ticks
	if c = waitTrial(t, e, 2, 2); c.Outcome != "" {
		t.Fatalf("a second promote of step 1 passed the pause: %+v", c)
	}
	if err := e.Promote(ctx, "web", "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "revision 2 deployed", func() bool {
		st, _ := e.Status(ctx)
		return len(st.Services) == 1 && st.Services[0].Canary != nil && st.Services[0].Canary.Outcome == "promoted" && servers(t, d, 2) == 2 && servers(t, d, 1) == 0
	})

	// Revision 3: aborted in its first step; revision 2 keeps serving, and is current
	// again though auto_rollback is off (the controller must not heal to revision 3).
	v3 := v2
	v3.Env = map[string]string{"V": "3"}
	if _, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{v3}, User: "test", Detach: true}); err != nil {
		t.Fatal(err)
	}
	waitTrial(t, e, 3, 1)
	if err := e.Abort(ctx, "web", "ops"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "revision 3 aborted", func() bool {
		st, _ := e.Status(ctx)
		return len(st.Services) == 1 && st.Services[0].Canary.Outcome == "aborted" && st.Services[0].Revision == 2 && servers(t, d, 3) == 0
	})
	hist, err := e.History(ctx, "web")
	if err != nil || hist[0].Number != 3 || hist[0].Outcome != "rolled_back" || !strings.Contains(hist[0].Detail, "aborted by ops at step 1 of 2") {
		t.Errorf("history: %v %+v", err, hist[0])
	}
	if err := e.Abort(ctx, "web", "ops"); !errors.Is(err, ErrNoCanary) || !strings.Contains(err.Error(), "aborted") {
		t.Errorf("a second Abort = %v, want ErrNoCanary naming how the last ended", err)
	}
}

func servers(t *testing.T, d *simDaemon, revision int64) int {
	list, err := d.drv.List(t.Context(), driver.Selector{Project: "sim", Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range list {
		if s.Revision == revision {
			n++
		}
	}
	return n
}

// oneByOne is the simulated runtime without its sets, as Docker runs servers: one by
// one, behind kiln's door.
type oneByOne struct{ *simdriver.Driver }

func (r oneByOne) Capabilities() driver.Capabilities {
	c := r.Driver.Capabilities()
	c.Sets = false
	return c
}

// trafficRuntime is the simulated runtime claiming to carry the services' traffic
// itself, as the Kubernetes driver does: a fake, for the refusal below.
type trafficRuntime struct{ *simdriver.Driver }

func (r trafficRuntime) Capabilities() driver.Capabilities {
	c := r.Driver.Capabilities()
	c.Traffic, c.Sets = true, false
	return c
}

// A canary needs kiln's door to carry the requests: a runtime that carries them
// itself (or runs sets, as one that does) refuses it at plan and apply, saying what to
// use instead.
func TestCanaryRefusedWhereTheRuntimeCarriesTraffic(t *testing.T) {
	d := newSimDaemon(t)
	for _, drv := range []driver.Driver{trafficRuntime{d.drv}, d.drv} {
		e := New(Options{State: d.state, Images: d.images, Driver: drv, Project: "sim", StateDir: d.dir, Log: d.log})
		svc := canaryService(d.service("web", 2), api.CanaryStep{Weight: 10, Duration: time.Minute})
		_, err := e.Plan(context.Background(), api.PlanRequest{Services: []api.Service{svc}})
		if err == nil || !strings.Contains(err.Error(), `strategy = "canary" needs kiln's front door`) || !strings.Contains(err.Error(), `use "rolling" or "blue-green"`) {
			t.Errorf("Plan = %v", err)
		}
		if _, err := e.Apply(context.Background(), api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err == nil || !strings.Contains(err.Error(), "needs kiln's front door") {
			t.Errorf("Apply = %v", err)
		}
	}
}
