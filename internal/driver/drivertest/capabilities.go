package drivertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

// testCapabilities: a claimed capability comes with its interface, and a driver's
// claims do not change with a new driver of the same runtime.
func (s *suite) testCapabilities(t *testing.T) {
	c := s.caps
	t.Logf("%s claims %+v", s.d.Name(), c)
	for _, x := range []struct {
		claimed bool
		what    string
		ok      bool
	}{
		{c.LoadImages, "LoadImages, but is not an ImageLoader", is[driver.ImageLoader](s.d)},
		{c.Events, "Events, but is not a Watcher", is[driver.Watcher](s.d)},
		{c.ExecEvents, "ExecEvents, but is not a Watcher", is[driver.Watcher](s.d)},
		{c.ExecEvents, "ExecEvents, but not Events", c.Events},
		{c.ConfigDiff, "ConfigDiff, but is not a Differ", is[driver.Differ](s.d)},
		{c.FileDiff, "FileDiff, but is not a Differ", is[driver.Differ](s.d)},
		{c.Logs, "Logs, but is not a Logger", is[driver.Logger](s.d)},
		{c.Wait, "Wait, but is not a Waiter", is[driver.Waiter](s.d)},
		{c.Stop, "Stop, but is not a Stopper", is[driver.Stopper](s.d)},
		{c.Sets, "Sets, but is not a SetDriver", is[driver.SetDriver](s.d)},
		{c.Readiness, "Readiness, but is not a Readier", is[driver.Readier](s.d)},
		{c.Traffic, "Traffic, but is not a ServiceHost", is[driver.ServiceHost](s.d)},
		{c.Tmpfs, "Tmpfs, but not ReadOnlyRoot (a writable path is only news on a read-only root)", c.ReadOnlyRoot},
	} {
		if x.claimed && !x.ok {
			t.Errorf("the driver claims %s", x.what)
		}
	}
	if got := driver.CapabilitiesOf(s.newDriver(t)); got != c {
		t.Errorf("a new driver claims %+v, the first %+v", got, c)
	}
}

func is[T any](d driver.Driver) bool { _, ok := d.(T); return ok }

// testExecEvents: a process started in a server from outside is reported as EventExec.
func (s *suite) testExecEvents(t *testing.T) {
	if !s.caps.ExecEvents {
		t.Skip("the driver does not claim exec events")
	}
	if s.opts.Exec == nil {
		t.Fatal("the driver claims exec events but the suite has no Exec to make one")
	}
	w := s.d.(driver.Watcher)
	wctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	events, err := w.Watch(wctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	srv := s.create(t, s.spec(s.service(t, "exec")))
	s.waitHealthy(t, srv.Address)
	s.opts.Exec(t, srv.ID)
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the event channel closed before the exec was reported")
			}
			if ev.ServerID == srv.ID && ev.Type == driver.EventExec {
				if !strings.HasPrefix(ev.Detail, "exec") || ev.Service != srv.Service {
					t.Errorf("exec reported as %+v: want a detail starting with exec, service %s", ev, srv.Service)
				}
				return
			}
		case <-timeout:
			t.Fatal("no exec event within 20s of an exec")
		}
	}
}

// testSets holds a SetDriver to the contract of driver.SetDriver, step by step on one
// set: ensure, idempotence, conflict, grow, a destroyed member replaced, evict, shrink,
// delete.
func (s *suite) testSets(t *testing.T) {
	sd, ok := s.d.(driver.SetDriver)
	if !ok {
		t.Skip("the driver is not a SetDriver")
	}
	svc := s.service(t, "sets")
	spec := s.spec(svc)
	spec.Revision = 3
	spec.Env = map[string]string{"KILN_TEST": "canary-" + randomHex(6)}
	spec = s.sealed(spec)
	ref := driver.SetOf(spec)
	// Registered after the service's cleanup, so it runs first: a set replaces the
	// servers the service's cleanup destroys.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := sd.DeleteSet(ctx, ref); err != nil {
			t.Errorf("cleanup: DeleteSet: %v", err)
		}
	})
	ensure := func(spec driver.ServerSpec, n int) {
		t.Helper()
		if err := sd.EnsureSet(ctxFor(t), spec, n); err != nil {
			t.Fatalf("EnsureSet(%s, %d): %v", spec.Service, n, err)
		}
		s.checkSize(t, sd, ref, spec, n)
	}

	ensure(spec, 2)
	first := s.waitMembers(t, sd, ref, 2, spec)
	listed := s.list(t, driver.Selector{Service: svc})
	for _, m := range first {
		s.waitHealthy(t, m.Address)
		if _, ok := find(listed, m.ID); !ok {
			t.Errorf("List(service %s) lacks the set's member %s", svc, m.ID)
		}
	}
	fresh, ok := s.newDriver(t).(driver.SetDriver)
	if !ok {
		t.Fatal("a new driver is not a SetDriver")
	}
	if sets, err := fresh.Sets(ctxFor(t), driver.Selector{Service: svc}); err != nil || len(sets) != 1 || sets[0].Ref != ref {
		t.Errorf("Sets of a new driver = %+v, %v; want the set %+v", sets, err, ref)
	}

	ensure(spec, 2)
	if again := s.waitMembers(t, sd, ref, 2, spec); !sameIDs(again, first) {
		t.Errorf("EnsureSet of the same size changed the members: %v, were %v", ids(again), ids(first))
	}

	other := spec
	other.Args = []string{"--other"}
	if err := sd.EnsureSet(ctxFor(t), other, 2); !errors.Is(err, driver.ErrSetConflict) {
		t.Errorf("EnsureSet of another spec for revision %d: %v, want ErrSetConflict", ref.Revision, err)
	}
	s.checkSize(t, sd, ref, spec, 2)

	ensure(spec, 3)
	grown := s.waitMembers(t, sd, ref, 3, spec)
	for _, m := range first {
		if _, ok := find(grown, m.ID); !ok {
			t.Errorf("growing the set removed %s: %v", m.ID, ids(grown))
		}
	}

	if err := s.d.Destroy(ctxFor(t), grown[0].ID); err != nil {
		t.Fatalf("Destroy of a member: %v", err)
	}
	replaced := s.waitMembers(t, sd, ref, 3, spec, grown[0].ID)
	s.checkSize(t, sd, ref, spec, 3)

	evicted := replaced[0].ID
	if err := sd.Evict(ctxFor(t), evicted); err != nil {
		t.Fatalf("Evict: %v", err)
	}
	s.checkSize(t, sd, ref, spec, 2)
	s.waitMembers(t, sd, ref, 2, spec, evicted)
	if err := sd.Evict(ctxFor(t), evicted); err != nil {
		t.Errorf("Evict of an evicted server: %v, want nil", err)
	}
	single := s.spec(svc)
	single.Revision = 99
	lone := s.create(t, single)
	if err := sd.Evict(ctxFor(t), lone.ID); !errors.Is(err, driver.ErrNotInSet) {
		t.Errorf("Evict of a server made by Create: %v, want ErrNotInSet", err)
	}

	ensure(spec, 1)
	s.waitMembers(t, sd, ref, 1, spec)

	if err := sd.DeleteSet(ctxFor(t), ref); err != nil {
		t.Fatalf("DeleteSet: %v", err)
	}
	var left []driver.Server
	var err error
	eventually(t, 30*time.Second, func() bool {
		left, err = sd.Members(ctxFor(t), ref)
		return err == nil && len(left) == 0
	}, func() string { return fmt.Sprintf("after DeleteSet, Members = %v, %v", ids(left), err) })
	if sets, err := sd.Sets(ctxFor(t), driver.Selector{Service: svc}); err != nil || len(sets) != 0 {
		t.Errorf("Sets after DeleteSet = %+v, %v; want none", sets, err)
	}
	if err := sd.DeleteSet(ctxFor(t), ref); err != nil {
		t.Errorf("DeleteSet of a deleted set: %v, want nil", err)
	}
	if _, ok := find(s.list(t, driver.Selector{Service: svc}), lone.ID); !ok {
		t.Errorf("DeleteSet removed %s, which is not the set's", lone.ID)
	}

	noImage := spec
	noImage.Revision, noImage.Image = 4, randomDigest()
	if err := sd.EnsureSet(ctxFor(t), noImage, 1); err != nil && !errors.Is(err, driver.ErrImageNotFound) {
		t.Errorf("EnsureSet with an image the runtime lacks: %v, want nil or ErrImageNotFound", err)
	} else if err == nil {
		t.Cleanup(func() { sd.DeleteSet(context.Background(), driver.SetOf(noImage)) })
	}
}

// checkSize checks the size the runtime records for the set at once: EnsureSet and
// Evict return once it is recorded.
func (s *suite) checkSize(t *testing.T, sd driver.SetDriver, ref driver.SetRef, spec driver.ServerSpec, n int) {
	t.Helper()
	sets, err := sd.Sets(ctxFor(t), driver.Selector{Project: ref.Project, Service: ref.Service})
	if err != nil {
		t.Fatalf("Sets: %v", err)
	}
	i := slices.IndexFunc(sets, func(x driver.Set) bool { return x.Ref == ref })
	if i < 0 {
		t.Fatalf("Sets(service %s) = %+v, lacks %+v", ref.Service, sets, ref)
	}
	if got := sets[i]; got.Replicas != n || got.SpecHash != spec.Hash() || got.Spec.Hash() != spec.Hash() {
		t.Errorf("the set is recorded as %d replicas of %s (spec hash %s), want %d of %s", got.Replicas, got.SpecHash, got.Spec.Hash(), n, spec.Hash())
	}
	recorded := fmt.Sprintf("%+v", sets[i])
	for k, v := range spec.Env {
		if strings.Contains(recorded, v) {
			t.Errorf("the set records the value of %s", k)
		}
	}
}

// waitMembers waits for the set to have n members, all running, none of them one of
// gone, and returns them.
func (s *suite) waitMembers(t *testing.T, sd driver.SetDriver, ref driver.SetRef, n int, spec driver.ServerSpec, gone ...driver.ServerID) []driver.Server {
	t.Helper()
	var members []driver.Server
	var err error
	eventually(t, 30*time.Second, func() bool {
		members, err = sd.Members(ctxFor(t), ref)
		if err != nil || len(members) != n {
			return false
		}
		for _, m := range members {
			if m.State != driver.StateRunning || m.Address == "" || slices.Contains(gone, m.ID) {
				return false
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("the set has %d members (%v, %v), want %d running but none of %v", len(members), members, err, n, gone)
	})
	for _, m := range members {
		if m.SpecHash != spec.Hash() || m.Revision != ref.Revision || m.Service != ref.Service || m.Spec.Hash() != spec.Hash() {
			t.Errorf("member %s is of spec %s, revision %d, service %s; want %s, %d, %s", m.ID, m.SpecHash, m.Revision, m.Service, spec.Hash(), ref.Revision, ref.Service)
		}
	}
	return members
}

func ids(servers []driver.Server) []driver.ServerID {
	out := make([]driver.ServerID, len(servers))
	for i, s := range servers {
		out[i] = s.ID
	}
	slices.Sort(out)
	return out
}

func sameIDs(a, b []driver.Server) bool { return slices.Equal(ids(a), ids(b)) }

// testReady: a server with a Probe the runtime runs becomes ready; with a probe that
// fails (on a runtime that runs processes) it does not; a server that is not there is
// ErrNotFound.
func (s *suite) testReady(t *testing.T) {
	r, ok := s.d.(driver.Readier)
	if !ok || !s.caps.Readiness {
		t.Skip("the driver does not claim Readiness")
	}
	svc := s.service(t, "ready")
	spec := s.spec(svc)
	spec.Probe = &driver.Probe{HTTPPath: "/healthz", Period: time.Second, Timeout: time.Second, FailureThreshold: 3}
	srv := s.create(t, spec)
	var err error
	eventually(t, 30*time.Second, func() bool {
		err = r.Ready(ctxFor(t), srv.ID)
		return err == nil
	}, func() string { return fmt.Sprintf("the server never became ready: %v", err) })
	if got, ok := find(s.list(t, driver.Selector{Service: svc}), srv.ID); !ok || got.SpecHash != spec.Hash() || got.Spec.Probe == nil || *got.Spec.Probe != *spec.Probe {
		t.Errorf("the server with a probe is listed as %+v, want its spec's probe %+v", got, spec.Probe)
	}
	if !s.opts.NoProcess {
		bad := s.spec(svc)
		bad.Probe = &driver.Probe{HTTPPath: "/no-such-path", Period: time.Second, Timeout: time.Second, FailureThreshold: 1}
		failing := s.create(t, bad)
		time.Sleep(3 * time.Second)
		if err := r.Ready(ctxFor(t), failing.ID); err == nil {
			t.Error("a server whose probe answers 404 is ready")
		}
	}
	if err := r.Ready(ctxFor(t), driver.ServerID("kiln-no-such-server-"+randomHex(4))); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Ready of an unknown ID: %v, want ErrNotFound", err)
	}
}
