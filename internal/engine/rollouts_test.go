package engine

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/store"
)

// A service's life on both paths, for each strategy: a rollout of a new server spec,
// scaling up and down (no server replaced), a restart that re-adopts the servers (none
// created or removed), and a destroy that leaves nothing (on a runtime of sets, no set
// that would bring servers back). On sets, kiln creates no server itself and each
// revision's servers are one set; a revision that changes only replicas keeps the set
// of the revision it scales.
func TestServiceLifeOnBothPaths(t *testing.T) {
	onPaths(t, func(t *testing.T, sets bool) {
		for _, strategy := range []string{"rolling", "blue-green"} {
			t.Run(strategy, func(t *testing.T) {
				ctx := context.Background()
				h := newHealHarness(t, sets)
				svc := h.d.service("web", 3)
				svc.Update.Strategy = strategy
				h.apply(svc)
				h.checkFleet(1, 3, map[int64]int{1: 3})
				first := h.ids("web")

				svc.Env = map[string]string{"N": "2"} // a new server spec
				h.apply(svc)
				h.checkFleet(2, 3, map[int64]int{2: 3})
				second := h.ids("web")
				if slices.ContainsFunc(second, func(id driver.ServerID) bool { return slices.Contains(first, id) }) {
					t.Errorf("servers %v of revision 1 kept by a rollout of a new spec", second)
				}

				svc.Replicas = 5 // replicas only: the servers stay
				h.apply(svc)
				h.checkFleet(3, 5, map[int64]int{2: 5})
				if got := h.ids("web"); !subset(second, got) {
					t.Errorf("scaling up replaced servers: %v, then %v", second, got)
				}
				svc.Replicas = 2
				h.apply(svc)
				h.checkFleet(4, 2, map[int64]int{2: 2})
				kept := h.ids("web")
				if !subset(kept, second) {
					t.Errorf("scaling down replaced servers: %v, then %v", second, kept)
				}

				// A restart re-adopts them: nothing is created, removed or resized.
				changes := h.changes()
				h.restart()
				eventually(t, 10*time.Second, "the servers back in rotation", func() bool { return h.inRotation("web", h.servers("web")) })
				if got := h.ids("web"); !slices.Equal(got, kept) || h.changes() != changes {
					t.Errorf("after a restart, servers %v (were %v) and %d changing calls; want the same servers and none", got, kept, h.changes()-changes)
				}
				h.checkFleet(4, 2, map[int64]int{2: 2})

				if res, err := h.e.Destroy(ctx, "web"); err != nil || !res.OK {
					t.Fatalf("destroy: %v %+v", err, res)
				}
				if ss, sizes := h.servers("web"), h.setSizes("web"); len(ss) != 0 || len(sizes) != 0 {
					t.Errorf("after destroy, servers %v and sets %v; want none", ss, sizes)
				}
				if n := len(h.eventsOf("web", api.EventDestroyed)); n < 3 {
					t.Errorf("%d destroyed events, want each server's and the service's", n)
				}
			})
		}
	})
}

// A revision whose servers exit is rolled back automatically, on both paths: the old
// servers serve throughout and stay; on sets, the failed revision leaves no set.
func TestAutoRollbackOnBothPaths(t *testing.T) {
	onPaths(t, func(t *testing.T, sets bool) {
		for _, strategy := range []string{"rolling", "blue-green"} {
			t.Run(strategy, func(t *testing.T) {
				ctx := context.Background()
				h := newHealHarness(t, sets)
				svc := h.d.service("web", 2)
				svc.Update.Strategy, svc.Update.AutoRollback = strategy, true
				h.apply(svc)
				before := h.ids("web")
				svc.Env = map[string]string{"PORT": "none"} // its servers exit at once
				res, err := h.e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"})
				if err != nil || len(res.Services) != 1 || res.Services[0].Outcome != string(store.OutcomeRolledBack) {
					t.Fatalf("apply of a failing revision: %v %+v, want it rolled back", err, res)
				}
				h.checkFleet(1, 2, map[int64]int{1: 2})
				if got := h.ids("web"); !slices.Equal(got, before) {
					t.Errorf("servers %v after the rollback, want the old ones %v", got, before)
				}
				hist, err := h.e.History(ctx, "web")
				if err != nil || len(hist) != 2 || hist[0].Outcome != string(store.OutcomeRolledBack) || !hist[1].Current {
					t.Errorf("history %+v %v, want revision 2 rolled back and 1 current", hist, err)
				}
			})
		}
	})
}

// checkFleet checks the service "web" at revision rev: n servers listed, all in
// rotation and healthy in Status. On sets, the service's sets are sizes (by
// revision) and kiln created no server itself; one by one there is no set.
func (h *healHarness) checkFleet(rev int64, n int, sizes map[int64]int) {
	h.t.Helper()
	ss := h.servers("web")
	st, err := h.e.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	if len(ss) != n || !h.inRotation("web", ss) || len(st.Services) != 1 || st.Services[0].Revision != rev || st.Services[0].Healthy != n ||
		len(st.Services[0].Servers) != n || st.Services[0].State != "healthy" {
		h.t.Errorf("revision %d: %d servers listed (in rotation: %v), status %+v; want %d, all in rotation and healthy", rev, len(ss), h.inRotation("web", ss), st.Services, n)
	}
	if h.sets == nil {
		sizes = nil
	}
	if got := h.setSizes("web"); !maps.Equal(got, sizes) && (len(got) > 0 || len(sizes) > 0) {
		h.t.Errorf("revision %d: sets %v, want %v", rev, got, sizes)
	}
	if h.sets != nil && h.ops.of(faultdriver.OpCreate) != 0 {
		h.t.Errorf("kiln created %d servers on a runtime of sets, want none", h.ops.of(faultdriver.OpCreate))
	}
}

// ids are the IDs of the service's servers, oldest first.
func (h *healHarness) ids(service string) []driver.ServerID {
	var out []driver.ServerID
	for _, s := range h.servers(service) {
		out = append(out, s.ID)
	}
	return out
}

// changes counts the calls that change servers or sets.
func (h *healHarness) changes() int {
	n := h.ops.of(faultdriver.OpCreate) + h.ops.of(faultdriver.OpDestroy)
	if h.sets != nil {
		h.sets.mu.Lock()
		n += h.sets.calls["ensure_set"] + h.sets.calls["evict"] + h.sets.calls["delete_set"]
		h.sets.mu.Unlock()
	}
	return n
}

func subset(a, b []driver.ServerID) bool {
	for _, id := range a {
		if !slices.Contains(b, id) {
			return false
		}
	}
	return true
}

// An old server a rollout has stopped and is removing shows in the status as
// "stopping", not as a server still waiting to be admitted.
func TestStatusShowsStoppingServers(t *testing.T) {
	ctx := context.Background()
	d := newSimDaemon(t)
	inj := faultdriver.New(d.drv, 1)
	var e *Engine
	var mu sync.Mutex
	var seen []string // the health of revision 1's servers at each removal
	armed := false
	inj.OnCall(func(_ context.Context, c faultdriver.Call) error {
		mu.Lock()
		on := armed && c.Op == faultdriver.OpDestroy
		mu.Unlock()
		if !on {
			return nil
		}
		st, err := e.Status(ctx)
		if err != nil {
			t.Error(err)
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		for _, ss := range st.Services {
			for _, s := range ss.Servers {
				if s.Revision == 1 && !s.InService {
					seen = append(seen, s.Health)
				}
			}
		}
		return nil
	})
	e, _, stop := d.startOn(inj.Driver(), nil)
	defer stop()
	svc := d.service("web", 2)
	svc.Update = api.Update{Strategy: "rolling", MaxSurge: 1, ProgressDeadline: time.Minute}
	if res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err != nil || !res.OK {
		t.Fatalf("revision 1: %v %+v", err, res)
	}
	mu.Lock()
	armed = true
	mu.Unlock()
	svc.Resources.MemoryBytes = 96 << 20
	if res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err != nil || !res.OK {
		t.Fatalf("revision 2: %v %+v", err, res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "stopping" || seen[1] != "stopping" {
		t.Errorf("health of the old servers being removed = %q, want stopping twice", seen)
	}
}
