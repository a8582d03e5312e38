package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/store"
)

// The controller's passes on the simulated driver. The engine's clock is fake: resyncs
// and crash-loop waits happen only when the test steps it; everything else (servers,
// health gates) runs for real on loopback.

// driftDriver is the simulated driver with a Differ whose answers the test sets: a
// fake, since the simulated servers have no files or configuration to drift.
type driftDriver struct {
	*simdriver.Driver
	mu    sync.Mutex
	drift map[driver.ServerID][]driver.Drift
}

func (d *driftDriver) Diff(ctx context.Context, s driver.Server) ([]driver.Drift, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drift[s.ID], nil
}

func (d *driftDriver) set(id driver.ServerID, drift ...driver.Drift) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drift[id] = drift
}

// Capabilities are the simulated driver's, with the file drift it now reports.
func (d *driftDriver) Capabilities() driver.Capabilities {
	caps := d.Driver.Capabilities()
	caps.FileDiff = true
	return caps
}

var _ driver.Differ = (*driftDriver)(nil)

// healHarness is an engine on the simulated driver with a fake clock.
type healHarness struct {
	t      *testing.T
	d      *simDaemon
	e      *Engine
	clk    *clocktesting.FakeClock
	drift  *driftDriver
	faults *faultdriver.Injector // over drift, over the simulated driver
}

func newHealHarness(t *testing.T) *healHarness {
	d := newSimDaemon(t)
	h := &healHarness{t: t, d: d, clk: clocktesting.NewFakeClock(time.Now()), drift: &driftDriver{Driver: d.drv, drift: map[driver.ServerID][]driver.Drift{}}}
	h.faults = faultdriver.New(h.drift, 1)
	h.e, _ = d.startWith(func(o *Options) {
		o.Clock = h.clk
		o.Driver = h.faults.Driver()
	})
	return h
}

func (h *healHarness) apply(svc api.Service) {
	h.t.Helper()
	if res, err := h.e.Apply(context.Background(), api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err != nil || !res.OK {
		h.t.Fatalf("apply: %v %+v", err, res)
	}
}

func (h *healHarness) servers(service string) []driver.Server {
	h.t.Helper()
	ss, err := h.d.drv.List(context.Background(), driver.Selector{Project: "sim", Service: service})
	if err != nil {
		h.t.Fatal(err)
	}
	return ss
}

// events returns the messages of the service's events of type typ, oldest first.
func (h *healHarness) events(service, typ string) []string {
	h.t.Helper()
	evs, err := h.e.QueryEvents(context.Background(), store.EventQuery{Service: service, Type: typ, Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for i := len(evs) - 1; i >= 0; i-- {
		out = append(out, evs[i].Message)
	}
	return out
}

// resync steps the fake clock past a resync once the loop waits on it: every
// service gets a full pass (drift checks).
func (h *healHarness) resync() {
	for !h.clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	h.clk.Step(DefaultResync)
}

func TestControllerReplacesADestroyedServer(t *testing.T) {
	h := newHealHarness(t)
	h.apply(h.d.service("web", 2))
	victim := h.servers("web")[0]
	if err := h.d.drv.Destroy(context.Background(), victim.ID); err != nil { // out of band
		t.Fatal(err)
	}
	// The destroy event is enough: no resync is needed.
	eventually(t, 10*time.Second, "a replacement", func() bool {
		ss := h.servers("web")
		return len(ss) == 2 && ss[0].ID != victim.ID && ss[1].ID != victim.ID && len(h.e.doors.Get("web").Upstreams()) == 2
	})
	if heals := h.events("web", api.EventHeal); len(heals) != 1 || !strings.Contains(heals[0], "is missing") {
		t.Errorf("heal events %q, want the one missing server", heals)
	}
	if got := testutilCount(t, h.e, "missing"); got != 1 {
		t.Errorf("kiln_replacements_total{reason=missing} = %v, want 1", got)
	}
}

// A destroy whose event is missed is found at the next resync; a resync whose List
// fails heals nothing and the next one does.
func TestControllerMissedEventsAndListErrors(t *testing.T) {
	h := newHealHarness(t)
	h.apply(h.d.service("web", 2))
	h.faults.Set(faultdriver.OpEvent, faultdriver.Fault{P: 1}) // every event dropped
	victim := h.servers("web")[0]
	if err := h.d.drv.Destroy(context.Background(), victim.ID); err != nil {
		t.Fatal(err)
	}
	h.faults.Set(faultdriver.OpList, faultdriver.Fault{P: 1, Err: errors.New("runtime unavailable")})
	h.resync()
	eventually(t, 10*time.Second, "the failed pass", func() bool { return h.faults.Injected(faultdriver.OpList) > 0 })
	if n := len(h.servers("web")); n != 1 {
		t.Fatalf("%d servers while the runtime cannot list, want the 1 left", n)
	}
	h.faults.Set(faultdriver.OpList) // the runtime answers again
	h.resync()
	eventually(t, 10*time.Second, "the replacement", func() bool { return len(h.servers("web")) == 2 })
	if errs := h.events("web", api.EventError); len(errs) == 0 || !strings.Contains(errs[0], "runtime unavailable") {
		t.Errorf("error events %q, want the failed list", errs)
	}
}

// A server that keeps exiting is replaced crashLoopHeals times, then the controller
// waits on its clock: no server is created until the clock passes the backoff.
func TestControllerBacksOffACrashLoop(t *testing.T) {
	h := newHealHarness(t)
	svc := h.d.service("web", 1)
	svc.Env = map[string]string{"EXIT_AFTER": "700ms"} // passes its gate, then exits
	h.apply(svc)
	eventually(t, 30*time.Second, "the crash loop to be noticed", func() bool {
		return len(h.events("web", api.EventDegraded)) > 0
	})
	if d := h.events("web", api.EventDegraded); !strings.Contains(d[0], "crash-looping (3 replacements in a row)") || !strings.Contains(d[0], "next attempt in 2s") {
		t.Errorf("degraded event %q", d[0])
	}
	replaced := len(h.events("web", api.EventCreated))
	if replaced != 1+crashLoopHeals {
		t.Errorf("%d servers created before the backoff, want the first and %d replacements", replaced, crashLoopHeals)
	}
	// The clock stands still: the backoff does not end, whatever the runtime reports.
	h.e.loop.Enqueue("web")
	time.Sleep(300 * time.Millisecond)
	if n := len(h.events("web", api.EventCreated)); n != replaced {
		t.Fatalf("%d servers created while backing off, want none", n-replaced)
	}
	if st, _ := h.e.Status(context.Background()); st.Services[0].State != "degraded" {
		t.Errorf("state %q while crash-looping, want degraded", st.Services[0].State)
	}
	h.clk.Step(2 * time.Second)
	eventually(t, 10*time.Second, "the attempt after the backoff", func() bool {
		return len(h.events("web", api.EventCreated)) > replaced
	})
}

// Drift found at a resync replaces the server (drift "replace", the default), or is
// reported once and left alone (drift "report"); drift is no crash loop.
func TestControllerDrift(t *testing.T) {
	for _, mode := range []string{"replace", "report"} {
		t.Run(mode, func(t *testing.T) {
			h := newHealHarness(t)
			svc := h.d.service("web", 2)
			svc.Drift = mode
			h.apply(svc)
			victim := h.servers("web")[0]
			h.drift.set(victim.ID, driver.Drift{Kind: driver.DriftFile, Detail: "/etc/passwd changed"})
			h.resync()
			if mode == "replace" {
				eventually(t, 10*time.Second, "the drifted server's replacement", func() bool {
					ss := h.servers("web")
					return len(ss) == 2 && ss[0].ID != victim.ID && ss[1].ID != victim.ID
				})
				want := "drift in server " + victim.Name + ": file: /etc/passwd changed"
				if d := h.events("web", api.EventDrift); len(d) != 1 || d[0] != want {
					t.Errorf("drift events %q, want %q", d, want)
				}
				if got := testutilCount(t, h.e, "drift"); got != 1 {
					t.Errorf("kiln_replacements_total{reason=drift} = %v, want 1", got)
				}
				if len(h.events("web", api.EventDegraded)) != 0 {
					t.Error("drift was taken for a crash loop")
				}
				return
			}
			eventually(t, 10*time.Second, "the drift report", func() bool { return len(h.events("web", api.EventDrift)) == 1 })
			h.resync()
			h.resync()
			eventually(t, 10*time.Second, "the status to show the drift", func() bool {
				st, _ := h.e.Status(context.Background())
				return len(st.Services) == 1 && st.Services[0].Drift != ""
			})
			if d := h.events("web", api.EventDrift); len(d) != 1 || !strings.Contains(d[0], "(reported, not replaced)") {
				t.Errorf("drift events %q, want one report", d)
			}
			if ss := h.servers("web"); len(ss) != 2 || (ss[0].ID != victim.ID && ss[1].ID != victim.ID) {
				t.Errorf("servers %v: the drifted server was replaced in report mode", ss)
			}
		})
	}
}

// testutilCount is the engine's kiln_replacements_total for reason, over services.
func testutilCount(t *testing.T, e *Engine, reason string) float64 {
	t.Helper()
	families, err := e.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "kiln_replacements_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
