package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/secret"
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
	every []driver.Drift // what every server reports, new ones too, when set
}

func (d *driftDriver) Diff(ctx context.Context, s driver.Server) ([]driver.Drift, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.every != nil {
		return d.every, nil
	}
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

// healHarness is an engine on the simulated driver with a fake clock, on one of the
// executor's paths (see onPaths).
type healHarness struct {
	t      *testing.T
	d      *simDaemon
	e      *Engine
	stop   func()
	clk    *clocktesting.FakeClock
	drift  *driftDriver
	faults *faultdriver.Injector // over drift, over the simulated driver
	ops    *opCounter            // the calls through faults
	drv    driver.Driver         // what the engine runs on
	sets   *setRuntime           // the set calls, on the sets path (nil one by one)
	key    *secret.Key
}

func newHealHarness(t *testing.T, sets bool) *healHarness {
	d := newSimDaemon(t)
	h := &healHarness{t: t, d: d, clk: clocktesting.NewFakeClock(time.Now()), drift: &driftDriver{Driver: d.drv, drift: map[driver.ServerID][]driver.Drift{}}}
	key, err := secret.NewKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	h.key = key
	h.faults = faultdriver.New(h.drift, 1)
	h.ops = countOps(h.faults)
	h.drv = h.faults.Driver()
	if sets {
		h.sets = newSetRuntime(h.drv, d.drv)
		h.drv = h.sets
	}
	h.start()
	return h
}

// start runs an engine on the harness's runtime and state.
func (h *healHarness) start() {
	h.e, h.stop = h.d.startWith(func(o *Options) {
		o.Clock = h.clk
		o.Driver = h.drv
		o.Secrets = h.key // a restarted engine digests env values as the one before
	})
}

// restart stops the engine and starts another on the same state and servers, as a
// restarted daemon.
func (h *healHarness) restart() {
	h.stop()
	h.start()
}

// pass steps the clock past a resync and waits until a pass over service has listed
// its servers and ended.
func (h *healHarness) pass(service string) {
	h.t.Helper()
	n := h.ops.of(faultdriver.OpList)
	h.resync()
	eventually(h.t, 10*time.Second, "a pass", func() bool { return h.ops.of(faultdriver.OpList) > n })
	st := h.e.state(service) // a pass lists under its lock: it has ended once the lock is free
	eventually(h.t, 10*time.Second, "the pass to end", func() bool {
		if !st.lock.TryLock() {
			return false
		}
		st.lock.Unlock()
		return true
	})
}

// setSizes are the sizes of the service's sets by revision (none one by one).
func (h *healHarness) setSizes(service string) map[int64]int {
	h.t.Helper()
	sets, err := h.d.drv.Sets(context.Background(), driver.Selector{Project: "sim", Service: service})
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[int64]int{}
	for _, s := range sets {
		out[s.Ref.Revision] = s.Replicas
	}
	return out
}

// inRotation reports whether the service's front door has exactly the servers listed,
// all of them.
func (h *healHarness) inRotation(service string, servers []driver.Server) bool {
	d := h.e.doors.Get(service)
	if d == nil || len(d.Upstreams()) != len(servers) {
		return false
	}
	for _, s := range servers {
		if !d.Has(s.Address) {
			return false
		}
	}
	return true
}

// eventsOf returns the service's events of type typ, oldest first.
func (h *healHarness) eventsOf(service, typ string) []api.Event {
	h.t.Helper()
	evs, err := h.e.QueryEvents(context.Background(), store.EventQuery{Service: service, Type: typ, Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	slices.Reverse(evs)
	return evs
}

// aboutServer reports whether one of evs is about server id.
func aboutServer(evs []api.Event, id driver.ServerID) bool {
	return slices.ContainsFunc(evs, func(ev api.Event) bool { return ev.ServerID == string(id) })
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

// A server destroyed out of band is replaced, once: by kiln one by one, by its set on
// a runtime of sets (kiln asks no set for more than its replicas, and creates nothing
// itself). Either way kiln records it: one heal event naming the server lost, the
// replacement admitted, kiln_replacements_total{reason="missing"} once.
func TestControllerReplacesADestroyedServer(t *testing.T) {
	onPaths(t, func(t *testing.T, sets bool) {
		h := newHealHarness(t, sets)
		h.apply(h.d.service("web", 2))
		before := h.servers("web")
		victim := before[0]
		creates := h.ops.of(faultdriver.OpCreate)
		if err := h.d.drv.Destroy(context.Background(), victim.ID); err != nil { // out of band
			t.Fatal(err)
		}
		// The destroy event is enough: no resync is needed.
		var after []driver.Server
		eventually(t, 10*time.Second, "a replacement", func() bool {
			after = h.servers("web")
			return len(after) == 2 && after[0].ID != victim.ID && after[1].ID != victim.ID && h.inRotation("web", after)
		})
		heals := h.eventsOf("web", api.EventHeal)
		if len(heals) != 1 || !strings.Contains(heals[0].Message, "is missing") || !strings.Contains(heals[0].Message, victim.Name) || heals[0].ServerID != string(victim.ID) {
			t.Errorf("heal events %+v, want the one missing server, %s, named", heals, victim.Name)
		}
		if got := testutilCount(t, h.e, "missing"); got != 1 {
			t.Errorf("kiln_replacements_total{reason=missing} = %v, want 1", got)
		}
		replacement := after[0]
		if replacement.ID == before[1].ID {
			replacement = after[1]
		}
		// Named when it starts (kiln's own, or one kiln waited for) or is admitted (a
		// blue-green heal admits its servers in one switch).
		if !aboutServer(h.eventsOf("web", api.EventCreated), replacement.ID) && !aboutServer(h.eventsOf("web", api.EventAdmitted), replacement.ID) {
			t.Errorf("no created or admitted event names the replacement %s", replacement.Name)
		}
		// Nothing is replaced twice: a pass later, the same two servers.
		h.pass("web")
		if ss := h.servers("web"); len(ss) != 2 || !slices.ContainsFunc(ss, func(s driver.Server) bool { return s.ID == replacement.ID }) {
			t.Errorf("servers %v after a resync, want the survivor and %s", ss, replacement.Name)
		}
		if !sets {
			if n := h.ops.of(faultdriver.OpCreate) - creates; n != 1 {
				t.Errorf("kiln created %d servers, want the replacement", n)
			}
			return
		}
		if n := h.ops.of(faultdriver.OpCreate); n != 0 {
			t.Errorf("kiln created %d servers on a runtime of sets, want none", n)
		}
		if most, sizes := h.sets.largest(), h.setSizes("web"); most != 2 || len(sizes) != 1 || sizes[1] != 2 {
			t.Errorf("kiln asked a set for %d servers, the sets are %v; want 2 at most, revision 1's of 2", most, sizes)
		}
	})
}

// A destroy whose event is missed is found at the next resync; a resync whose List
// fails heals nothing and the next one does. On a runtime of sets, the set replaces
// the server meanwhile; kiln puts the replacement in rotation only once it can list.
func TestControllerMissedEventsAndListErrors(t *testing.T) {
	onPaths(t, func(t *testing.T, sets bool) {
		h := newHealHarness(t, sets)
		h.apply(h.d.service("web", 2))
		h.faults.Set(faultdriver.OpEvent, faultdriver.Fault{P: 1}) // every event dropped
		before := h.servers("web")
		victim := before[0]
		if err := h.d.drv.Destroy(context.Background(), victim.ID); err != nil {
			t.Fatal(err)
		}
		h.faults.Set(faultdriver.OpList, faultdriver.Fault{P: 1, Err: errors.New("runtime unavailable")})
		h.resync()
		eventually(t, 10*time.Second, "the failed pass", func() bool { return h.faults.Injected(faultdriver.OpList) > 0 })
		want := 1 // the one left
		if sets {
			want = 2 // and the set's replacement
		}
		ss := h.servers("web")
		if len(ss) != want {
			t.Fatalf("%d servers while the runtime cannot list, want %d", len(ss), want)
		}
		for _, s := range ss {
			if s.ID != before[1].ID && h.e.doors.Get("web").Has(s.Address) {
				t.Errorf("the set's replacement %s is in rotation before kiln could list it", s.Name)
			}
		}
		h.faults.Set(faultdriver.OpList) // the runtime answers again
		h.resync()
		eventually(t, 10*time.Second, "the replacement", func() bool {
			ss := h.servers("web")
			return len(ss) == 2 && h.inRotation("web", ss)
		})
		if errs := h.events("web", api.EventError); len(errs) == 0 || !strings.Contains(errs[0], "runtime unavailable") {
			t.Errorf("error events %q, want the failed list", errs)
		}
		if heals := h.eventsOf("web", api.EventHeal); len(heals) != 1 || heals[0].ServerID != string(victim.ID) || testutilCount(t, h.e, "missing") != 1 {
			t.Errorf("heal events %+v, %v counted missing; want one, naming %s, counted once", heals, testutilCount(t, h.e, "missing"), victim.Name)
		}
	})
}

// A server that keeps exiting is replaced crashLoopHeals times, then the controller
// waits on its clock: no server is created until the clock passes the backoff. On a
// runtime of sets, an exited member is not replaced by its set, so the same holds.
func TestControllerBacksOffACrashLoop(t *testing.T) {
	onPaths(t, func(t *testing.T, sets bool) {
		h := newHealHarness(t, sets)
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
		if sets {
			if most := h.sets.largest(); most != 1 {
				t.Errorf("kiln asked the set for %d servers, want 1 at most: an exited member is evicted before the set grows", most)
			}
		}
		h.clk.Step(2 * time.Second)
		eventually(t, 10*time.Second, "the attempt after the backoff", func() bool {
			return len(h.events("web", api.EventCreated)) > replaced
		})
	})
}

// Drift found at a resync replaces the server (drift "replace", the default), or is
// reported once and left alone (drift "report"); drift is no crash loop. On a runtime
// of sets, the drifted member is evicted once its set has grown by one: the set is
// back at its size, and the runtime makes no replacement of its own.
func TestControllerDrift(t *testing.T) {
	onPaths(t, func(t *testing.T, sets bool) {
		for _, mode := range []string{"replace", "report"} {
			t.Run(mode, func(t *testing.T) {
				h := newHealHarness(t, sets)
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
					if sets {
						h.checkEvicted(victim, 2)
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
	})
}

// A drift every new server has (the image or the runtime makes it, as the mount point
// of an init once did) is not cured by replacing servers: once the servers made to
// replace drifted ones drift the same way, replacements are paced as a crash loop and
// a degraded event says so, once, with what to do. Before, each resync replaced every
// server: 24 replacements in the 12 resyncs below.
func TestControllerRecurringDriftBacksOff(t *testing.T) {
	h := newHealHarness(t, false)
	h.apply(h.d.service("web", 2))
	h.drift.mu.Lock()
	h.drift.every = []driver.Drift{{Kind: driver.DriftFile, Detail: "added /usr/sbin/docker-init"}}
	h.drift.mu.Unlock()
	const resyncs = 12
	for range resyncs {
		h.pass("web")
	}
	replaced := len(h.events("web", api.EventHeal))
	// Unpaced, each resync replaces both servers (24); paced, the backoff's waits (2 s,
	// 4 s, 8 s... after 3 heals) skip resyncs once they outgrow the 5 s between them.
	if replaced == 0 || replaced > 2*resyncs*3/4 {
		t.Errorf("%d servers replaced in %d resyncs, want some, paced (unpaced: %d)", replaced, resyncs, 2*resyncs)
	}
	var said []string
	for _, m := range h.events("web", api.EventDegraded) {
		if strings.Contains(m, "new servers drift as the ones they replaced did (file: added /usr/sbin/docker-init)") {
			said = append(said, m)
		}
	}
	if len(said) != 1 {
		t.Errorf("degraded events %q, want the recurring drift said once", h.events("web", api.EventDegraded))
	}
	t.Logf("%d replacements in %d resyncs", replaced, resyncs)
}

// A process started in a server from outside (an exec) is drift: the server is
// replaced, the exec recorded and counted as drift. The simulated runtime reports no
// exec, so the test hands the engine a fake exec event, as a runtime that claims
// ExecEvents would send it.
func TestControllerReplacesAnExecedServer(t *testing.T) {
	onPaths(t, func(t *testing.T, sets bool) {
		h := newHealHarness(t, sets)
		h.apply(h.d.service("web", 2))
		victim := h.servers("web")[0]
		h.e.observe(context.Background(), driver.Event{Type: driver.EventExec, ServerID: victim.ID, Project: "sim", Service: "web",
			Detail: "exec_start: sh -c id"}) // a fake: see above
		h.e.loop.Enqueue("web")
		eventually(t, 10*time.Second, "the exec'd server's replacement", func() bool {
			ss := h.servers("web")
			return len(ss) == 2 && ss[0].ID != victim.ID && ss[1].ID != victim.ID && h.inRotation("web", ss)
		})
		heals := h.eventsOf("web", api.EventHeal)
		if len(heals) != 1 || heals[0].ServerID != string(victim.ID) || !strings.Contains(heals[0].Message, "a process was started in it from outside (exec_start: sh -c id)") {
			t.Errorf("heal events %+v, want the exec'd server's replacement", heals)
		}
		if got := testutilCount(t, h.e, "drift"); got != 1 {
			t.Errorf("kiln_replacements_total{reason=drift} = %v, want 1", got)
		}
		if sets {
			h.checkEvicted(victim, 2)
		}
	})
}

// checkEvicted checks, on the sets path, that victim was replaced by growing its set
// and evicting it (no Destroy, which its set would undo), and that a resync later the
// set has its replicas, and no more servers.
func (h *healHarness) checkEvicted(victim driver.Server, replicas int) {
	h.t.Helper()
	if !h.sets.evicted(victim.ID) || h.ops.of(faultdriver.OpDestroy) != 0 || h.ops.of(faultdriver.OpCreate) != 0 {
		h.t.Errorf("evicted %v, %d destroyed and %d created by kiln; want the victim evicted, none destroyed or created",
			h.sets.evicted(victim.ID), h.ops.of(faultdriver.OpDestroy), h.ops.of(faultdriver.OpCreate))
	}
	if most := h.sets.largest(); most != replicas+1 {
		h.t.Errorf("kiln asked the set for %d servers, want %d: one more while the replacement starts", most, replicas+1)
	}
	h.pass("web")
	if ss, sizes := h.servers("web"), h.setSizes("web"); len(ss) != replicas || len(sizes) != 1 || sizes[1] != replicas {
		h.t.Errorf("%d servers, sets %v after the replacement; want %d, in revision 1's set", len(ss), sizes, replicas)
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
