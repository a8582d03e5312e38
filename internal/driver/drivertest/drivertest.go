package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/driver"
)

// Options are the runtime-specific parts of the suite. The zero value is valid.
type Options struct {
	// Inspect asserts, with the runtime's own tools, that the running server id was
	// made as spec says and with kiln's security defaults (read-only root, a tmpfs per
	// Writable path, no capabilities, no privilege escalation, the limits...): things
	// the Driver interface cannot show. Nil skips that case.
	Inspect func(t *testing.T, id driver.ServerID, spec driver.ServerSpec)
	// RemoveImage removes from the runtime an image the suite had an ImageLoader load
	// for itself (one per run), so that runs do not pile images up. It is called at
	// cleanup, after the servers using it are gone. Nil leaves the image.
	RemoveImage func(t *testing.T, digest string)
	// Digest is the keyed digest the driver was configured with for
	// ServerSpec.Digests; the suite fills the digests of the specs it creates with it.
	// Nil leaves them empty.
	Digest func([]byte) string
	// Recorded returns everything the runtime keeps about server id that its users can
	// read besides the process's own environment and files (Docker: the labels), for
	// the suite to check that no env or file value is in it. Nil skips that check.
	Recorded func(t *testing.T, id driver.ServerID) string
	// Exec starts a process in the running server id from outside, with the runtime's
	// own tools (docker exec), for the suite to check the EventExec a driver claiming
	// ExecEvents reports. A driver that claims them must give it.
	Exec func(t *testing.T, id driver.ServerID)
	// Loopback: servers' addresses are on a loopback address (Docker publishes ports
	// there); other runtimes' need only be reachable from the test.
	Loopback bool
	// NoProcess: the runtime runs no server's process, only reports it running (kwok's
	// fake nodes). The cases that need a process to serve, print, exit or fail to start
	// are skipped, saying so, and no server is probed; the rest of the contract holds.
	NoProcess bool
}

// Run runs the conformance suite against the drivers newDriver returns, starting
// servers of img. Every server it creates is destroyed at cleanup, failed or not; its
// services are named "kt<run>-<case>", with <run> random, so concurrent runs against
// one runtime do not see each other. The cases run in parallel. What the driver claims
// (driver.CapabilitiesOf) it is held to; what it does not claim is skipped.
func Run(t *testing.T, newDriver func(t *testing.T) driver.Driver, img Image, opts Options) {
	s := &suite{newDriver: newDriver, img: img, opts: opts, prefix: "kt" + randomHex(3) + "-"}
	s.d = newDriver(t)
	s.caps = driver.CapabilitiesOf(s.d)
	if l, ok := s.d.(driver.ImageLoader); ok {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if err := l.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
			t.Fatalf("EnsureImage(%s): %v", img.Digest, err)
		}
	}
	t.Run("Capabilities", s.testCapabilities)
	t.Run("EnsureImage", s.testEnsureImage)
	t.Run("Cases", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			test    func(*testing.T)
			process bool // it needs the server's process to run
		}{
			{"CreateServes", s.testCreateServes, false},
			{"Destroy", s.testDestroy, false},
			{"Role", s.testRole, false},
			{"ImageNotFound", s.testImageNotFound, false},
			{"StartFailureLeavesNothing", s.testStartFailure, true},
			{"Env", s.testEnv, true},
			{"Inspect", s.testInspect, false},
			{"Exited", s.testExited, true},
			{"Concurrent", s.testConcurrent, false},
			{"Watch", s.testWatch, false},
			{"Logs", s.testLogs, true},
			{"DiffClean", s.testDiffClean, false},
			{"SecretsNotRecorded", s.testSecretsNotRecorded, false},
			{"Wait", s.testWait, true},
			{"Stop", s.testStop, true},
			{"ExecEvents", s.testExecEvents, true},
			{"Sets", s.testSets, false},
			{"Ready", s.testReady, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				if c.process && s.opts.NoProcess {
					t.Skip("the runtime runs no server's process (Options.NoProcess)")
				}
				t.Parallel()
				c.test(t)
			})
		}
	})
	// The cases' cleanups have run: whatever is left, Destroy failed to remove.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	all, err := s.d.List(ctx, driver.Selector{})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, srv := range all {
		if strings.HasPrefix(srv.Service, s.prefix) {
			t.Errorf("server %s (%s) of service %s is left after its test's cleanup", srv.Name, srv.ID, srv.Service)
			s.d.Destroy(ctx, srv.ID)
		}
	}
}

type suite struct {
	d         driver.Driver
	caps      driver.Capabilities
	newDriver func(*testing.T) driver.Driver
	img       Image
	opts      Options
	prefix    string // of every service this run creates
}

// service names a service for one case and destroys its servers at the case's cleanup.
func (s *suite) service(t *testing.T, name string) string {
	svc := s.prefix + strings.ToLower(name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		servers, err := s.d.List(ctx, driver.Selector{Service: svc})
		if err != nil {
			t.Errorf("cleanup: List: %v", err)
			return
		}
		for _, srv := range servers {
			if err := s.d.Destroy(ctx, srv.ID); err != nil {
				t.Errorf("cleanup: Destroy(%s): %v", srv.ID, err)
			}
		}
	})
	return svc
}

// spec is a spec of the suite's image that serves.
func (s *suite) spec(svc string) driver.ServerSpec {
	return driver.ServerSpec{
		Service:   svc,
		Revision:  1,
		Image:     s.img.Digest,
		Port:      s.img.Port,
		Resources: driver.DefaultResources,
	}
}

// sealed is spec with its Digests filled as the caller of a driver fills them.
func (s *suite) sealed(spec driver.ServerSpec) driver.ServerSpec {
	if s.opts.Digest != nil {
		spec.Digests = driver.Digests(spec.Env, spec.Files, s.opts.Digest)
	}
	return spec
}

func (s *suite) create(t *testing.T, spec driver.ServerSpec) driver.Server {
	t.Helper()
	srv, err := s.d.Create(ctxFor(t), spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.Service, err)
	}
	return srv
}

func (s *suite) list(t *testing.T, sel driver.Selector) []driver.Server {
	t.Helper()
	servers, err := s.d.List(ctxFor(t), sel)
	if err != nil {
		t.Fatalf("List(%+v): %v", sel, err)
	}
	for _, srv := range servers {
		if !sel.Matches(srv) {
			t.Errorf("List(%+v) returned %s of service %q", sel, srv.ID, srv.Service)
		}
	}
	return servers
}

func find(servers []driver.Server, id driver.ServerID) (driver.Server, bool) {
	i := slices.IndexFunc(servers, func(s driver.Server) bool { return s.ID == id })
	if i < 0 {
		return driver.Server{}, false
	}
	return servers[i], true
}

func (s *suite) testEnsureImage(t *testing.T) {
	l, ok := s.d.(driver.ImageLoader)
	if !ok {
		t.Skip("the driver is not an ImageLoader")
	}
	ctx := ctxFor(t)
	v, err := variant(s.img, s.prefix)
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.RemoveImage != nil {
		// Registered before the service, so it runs after its servers are destroyed.
		t.Cleanup(func() { s.opts.RemoveImage(t, v.Digest) })
	}
	svc := s.service(t, "ensureimage")

	var opens atomic.Int32
	open := func() (v1.Image, error) { opens.Add(1); return v.Image, nil }
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := l.EnsureImage(ctx, v.Digest, open); err != nil {
				t.Errorf("EnsureImage(%s): %v", v.Digest, err)
			}
		})
	}
	wg.Wait()
	if n := opens.Load(); n != 1 {
		t.Errorf("3 concurrent EnsureImage of a new image opened it %d times, want 1", n)
	}
	if err := l.EnsureImage(ctx, v.Digest, open); err != nil {
		t.Errorf("EnsureImage again: %v", err)
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("EnsureImage of an image the runtime has opened it (%d opens in all)", n)
	}
	spec := s.spec(svc)
	spec.Image = v.Digest
	s.waitHealthy(t, s.create(t, spec).Address)

	boom := errors.New("boom")
	if err := l.EnsureImage(ctx, randomDigest(), func() (v1.Image, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("EnsureImage with a failing open: got %v, want an error wrapping open's", err)
	}
	if err := l.EnsureImage(ctx, randomDigest(), func() (v1.Image, error) { return s.img.Image, nil }); err == nil {
		t.Errorf("EnsureImage accepted an image whose digest is not the one asked for")
	}
}

func (s *suite) testCreateServes(t *testing.T) {
	svc := s.service(t, "serves")
	spec := s.spec(svc)
	spec.Revision = 7
	before := time.Now()
	srv := s.create(t, spec)
	want := driver.Server{ID: srv.ID, Name: srv.Name, Service: svc, Revision: 7, SpecHash: spec.Hash(), Image: s.img.Digest, Address: srv.Address, State: driver.StateRunning}
	checkServer(t, "Create", srv, want, spec)
	checkAddress(t, srv.Address, s.opts.Loopback)
	s.waitHealthy(t, srv.Address)
	if srv.Created.Before(before.Add(-time.Minute)) || srv.Created.After(time.Now().Add(time.Minute)) {
		t.Errorf("Create: Created = %v, want about %v", srv.Created, before)
	}

	servers := s.list(t, driver.Selector{Service: svc})
	if len(servers) != 1 || servers[0].ID != srv.ID {
		t.Fatalf("List(service %s) = %+v, want just %s", svc, servers, srv.ID)
	}
	got := servers[0]
	checkServer(t, "List", got, want, spec)
	if !got.Created.Equal(srv.Created) {
		t.Errorf("List: Created = %v, Create said %v", got.Created, srv.Created)
	}
	if _, ok := find(s.list(t, driver.Selector{}), srv.ID); !ok {
		t.Errorf("List(all) lacks %s", srv.ID)
	}
	if other := s.list(t, driver.Selector{Service: svc + "-other"}); len(other) != 0 {
		t.Errorf("List(another service) = %+v, want none", other)
	}
	// A restarted kiln, with a new driver, finds the server and its spec again.
	fresh, err := s.newDriver(t).List(ctxFor(t), driver.Selector{Service: svc})
	if err != nil {
		t.Fatalf("List of a new driver: %v", err)
	}
	again, ok := find(fresh, srv.ID)
	if !ok {
		t.Fatalf("a new driver does not list %s", srv.ID)
	}
	checkServer(t, "List of a new driver", again, want, spec)
}

// checkServer compares what the driver reports of a server with what was asked for.
func checkServer(t *testing.T, what string, got, want driver.Server, spec driver.ServerSpec) {
	t.Helper()
	if got.ID == "" || got.Name == "" {
		t.Errorf("%s: ID %q, Name %q: want both set", what, got.ID, got.Name)
	}
	if got.ID != want.ID || got.Name != want.Name || got.Service != want.Service || got.Revision != want.Revision ||
		got.SpecHash != want.SpecHash || got.Image != want.Image || got.Address != want.Address || got.State != want.State {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
	}
	if h := got.Spec.Hash(); h != spec.Hash() {
		t.Errorf("%s: Spec = %+v (hash %s), want %+v (hash %s)", what, got.Spec, h, spec, spec.Hash())
	}
	if got.Spec.Revision != spec.Revision {
		t.Errorf("%s: Spec.Revision = %d, want %d", what, got.Spec.Revision, spec.Revision)
	}
}

// checkAddress checks that addr is a host:port, on loopback if loopback.
func checkAddress(t *testing.T, addr string, loopback bool) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("Address %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); loopback && (ip == nil || !ip.IsLoopback()) {
		t.Errorf("Address %q is not on a loopback address", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 {
		t.Errorf("Address %q has no port", addr)
	}
}

func (s *suite) testDestroy(t *testing.T) {
	ctx := ctxFor(t)
	svc := s.service(t, "destroy")
	srv := s.create(t, s.spec(svc))
	if err := s.d.Destroy(ctx, srv.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if servers := s.list(t, driver.Selector{Service: svc}); len(servers) != 0 {
		t.Errorf("List after Destroy = %+v, want none", servers)
	}
	if err := s.d.Destroy(ctx, srv.ID); err != nil {
		t.Errorf("Destroy of a destroyed server: %v, want nil", err)
	}
	if err := s.d.Destroy(ctx, driver.ServerID("kiln-no-such-server-"+randomHex(4))); err != nil {
		t.Errorf("Destroy of an unknown ID: %v, want nil", err)
	}
}

// testRole: a candidate is listed only by a selector of its role, so that no service
// counts it as its own, and a new driver reads its role back.
func (s *suite) testRole(t *testing.T) {
	svc := s.service(t, "role")
	spec := s.spec(svc)
	spec.Role = driver.RoleCandidate
	srv := s.create(t, spec)
	defer s.d.Destroy(context.WithoutCancel(ctxFor(t)), srv.ID)
	if _, ok := find(s.list(t, driver.Selector{Service: svc}), srv.ID); ok {
		t.Errorf("List(service %s) has the candidate %s", svc, srv.ID)
	}
	if _, ok := find(s.list(t, driver.Selector{}), srv.ID); ok {
		t.Errorf("List(all) has the candidate %s", srv.ID)
	}
	fresh, err := s.newDriver(t).List(ctxFor(t), driver.Selector{Service: svc, Role: driver.RoleCandidate})
	if err != nil {
		t.Fatalf("List of a new driver: %v", err)
	}
	got, ok := find(fresh, srv.ID)
	if !ok {
		t.Fatalf("List(candidates of %s) of a new driver lacks %s", svc, srv.ID)
	}
	if got.Spec.Role != driver.RoleCandidate || got.SpecHash != spec.Hash() {
		t.Errorf("the candidate is listed with role %q, hash %s; want %q, %s", got.Spec.Role, got.SpecHash, driver.RoleCandidate, spec.Hash())
	}
}

func (s *suite) testImageNotFound(t *testing.T) {
	svc := s.service(t, "noimage")
	spec := s.spec(svc)
	spec.Image = randomDigest()
	if _, err := s.d.Create(ctxFor(t), spec); !errors.Is(err, driver.ErrImageNotFound) {
		t.Errorf("Create with an image the runtime lacks: got %v, want ErrImageNotFound", err)
	}
	if servers := s.list(t, driver.Selector{Service: svc}); len(servers) != 0 {
		t.Errorf("a failed Create left %+v", servers)
	}
}

// testStartFailure makes the runtime fail after the server exists: its command does
// not exist.
func (s *suite) testStartFailure(t *testing.T) {
	svc := s.service(t, "startfails")
	spec := s.spec(svc)
	spec.Command = []string{"/no/such/binary"}
	srv, err := s.d.Create(ctxFor(t), spec)
	if err == nil {
		t.Errorf("Create with a command that does not exist succeeded: %+v", srv)
	}
	t.Logf("Create with a command that does not exist: %v", err)
	if servers := s.list(t, driver.Selector{Service: svc}); len(servers) != 0 {
		t.Errorf("a failed Create left %+v", servers)
	}
}

// testEnv moves the server's port with its environment: it answers only if Env
// reached the process.
// testDiffClean: a server just created from its spec has no drift (no false alarms from
// files the runtime itself writes), and a server that is gone is ErrNotFound.
func (s *suite) testDiffClean(t *testing.T) {
	differ, ok := s.d.(driver.Differ)
	if !ok {
		t.Skip("the driver is not a Differ")
	}
	spec := s.spec(s.service(t, "diff"))
	spec.Writable = []string{"/tmp"}
	spec.Env = map[string]string{"KILN_TEST": "1"}
	spec = s.sealed(spec)
	srv := s.create(t, spec)
	s.waitHealthy(t, srv.Address)
	drifts, err := differ.Diff(t.Context(), srv)
	if err != nil {
		t.Fatal(err)
	}
	if len(drifts) != 0 {
		t.Errorf("a fresh server drifts: %+v", drifts)
	}
	if err := s.d.Destroy(t.Context(), srv.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := differ.Diff(t.Context(), srv); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Diff of a destroyed server: %v, want ErrNotFound", err)
	}
}

func (s *suite) testEnv(t *testing.T) {
	svc := s.service(t, "env")
	spec := s.spec(svc)
	spec.Port = 9090
	spec.Env = map[string]string{"PORT": "9090", "KILN_TEST": "1"}
	spec = s.sealed(spec)
	s.waitHealthy(t, s.create(t, spec).Address)
}

func (s *suite) testInspect(t *testing.T) {
	if s.opts.Inspect == nil {
		if c := s.caps; c.ReadOnlyRoot || c.Tmpfs || c.PIDsLimit || c.MemoryLimit || c.CPULimit || c.NoPrivileges || c.ProjectNetwork {
			t.Fatalf("the driver claims isolation (%+v) but the suite has no Inspect to prove it", c)
		}
		t.Skip("no Inspect for this runtime, which claims no isolation")
	}
	svc := s.service(t, "inspect")
	spec := s.spec(svc)
	spec.Command = []string{"/hello"}
	spec.Args = []string{"--ignored", "arg"}
	spec.Env = map[string]string{"B": "2", "A": "1", "GREETING_FILE": "/tmp/greeting.txt"}
	spec = s.sealed(spec)
	spec.Writable = []string{"/tmp", "/var/cache/hello"}
	spec.Resources = driver.Resources{CPUs: 0.5, MemoryBytes: 96 << 20, PIDs: 64}
	spec.Init, spec.StopSignal, spec.StopTimeout = true, "SIGINT", 7*time.Second
	srv := s.create(t, spec)
	s.waitHealthy(t, srv.Address)
	s.opts.Inspect(t, srv.ID, spec)
}

// testExited runs a server whose process fails at once (its port is not a port).
func (s *suite) testExited(t *testing.T) {
	svc := s.service(t, "exited")
	spec := s.spec(svc)
	spec.Env = map[string]string{"PORT": "notaport"}
	spec = s.sealed(spec)
	srv := s.create(t, spec)
	var got driver.Server
	eventually(t, 15*time.Second, func() bool {
		got, _ = find(s.list(t, driver.Selector{Service: svc}), srv.ID)
		return got.State == driver.StateExited
	}, func() string {
		return fmt.Sprintf("the server whose process exited is listed as %+v, want state exited", got)
	})
	if got.SpecHash != spec.Hash() || got.Service != svc {
		t.Errorf("exited server listed as %+v", got)
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	const n = 4
	svc := s.service(t, "concurrent")
	servers := make([]driver.Server, n)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() {
			srv, err := s.d.Create(ctxFor(t), s.spec(svc))
			if err != nil {
				t.Errorf("Create #%d: %v", i, err)
			}
			servers[i] = srv
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	ids, names, addrs := map[driver.ServerID]bool{}, map[string]bool{}, map[string]bool{}
	for _, srv := range servers {
		ids[srv.ID], names[srv.Name], addrs[srv.Address] = true, true, true
		s.waitHealthy(t, srv.Address)
	}
	if len(ids) != n || len(names) != n || len(addrs) != n {
		t.Errorf("%d servers of one spec created at once do not have distinct IDs, names and addresses: %+v", n, servers)
	}
	if listed := s.list(t, driver.Selector{Service: svc}); len(listed) != n {
		t.Errorf("List = %d servers, want %d", len(listed), n)
	}
}

func (s *suite) testWatch(t *testing.T) {
	w, ok := s.d.(driver.Watcher)
	if !ok {
		t.Skip("the driver is not a Watcher")
	}
	svc := s.service(t, "watch")
	wctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	events, err := w.Watch(wctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	srv := s.create(t, s.spec(svc))
	if err := s.d.Destroy(ctxFor(t), srv.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}

	var got []driver.EventType
	timeout := time.After(20 * time.Second)
collect:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the event channel closed early; got %v", got)
			}
			if ev.ServerID != srv.ID {
				continue // another case's server
			}
			if ev.Service != svc || ev.Time.IsZero() {
				t.Errorf("event %+v: want service %s and a time", ev, svc)
			}
			got = append(got, ev.Type)
			if ev.Type == driver.EventDestroy {
				break collect
			}
		case <-timeout:
			t.Fatalf("no destroy event within 20s; got %v", got)
		}
	}
	if !isSubsequence([]driver.EventType{driver.EventStart, driver.EventDie, driver.EventDestroy}, got) {
		t.Errorf("events for a server created then destroyed = %v, want start, die, destroy in order", got)
	}

	cancel()
	closed := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-closed:
			t.Fatal("the event channel is still open 5s after its context ended")
		}
	}
}

func isSubsequence(want, got []driver.EventType) bool {
	for _, g := range got {
		if len(want) > 0 && g == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}

func (s *suite) testLogs(t *testing.T) {
	l, ok := s.d.(driver.Logger)
	if !ok {
		t.Skip("the driver is not a Logger")
	}
	svc := s.service(t, "logs")
	srv := s.create(t, s.spec(svc))
	s.waitHealthy(t, srv.Address)
	var logs string
	eventually(t, 10*time.Second, func() bool {
		r, err := l.Logs(ctxFor(t), srv.ID, false)
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading Logs: %v", err)
		}
		logs = string(b)
		return strings.Contains(logs, "listening")
	}, func() string { return fmt.Sprintf("the logs lack the server's %q line: %q", "listening", logs) })

	// Following: the reader ends when closed.
	r, err := l.Logs(ctxFor(t), srv.ID, true)
	if err != nil {
		t.Fatalf("Logs(follow): %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, r); done <- err }()
	time.Sleep(200 * time.Millisecond)
	r.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("a followed log reader does not end within 5s of its Close")
	}

	if _, err := l.Logs(ctxFor(t), driver.ServerID("kiln-no-such-server-"+randomHex(4)), false); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Logs of an unknown ID: got %v, want ErrNotFound", err)
	}
}

// waitHealthy waits for GET /healthz at addr to answer 200; at once on a runtime that
// runs no process.
func (s *suite) waitHealthy(t *testing.T, addr string) {
	t.Helper()
	if s.opts.NoProcess {
		return
	}
	c := &http.Client{Timeout: time.Second}
	var last string
	eventually(t, 10*time.Second, func() bool {
		resp, err := c.Get("http://" + addr + "/healthz")
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	}, func() string { return fmt.Sprintf("GET http://%s/healthz: %s", addr, last) })
}

// eventually polls cond until it holds, failing the test with msg after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctxFor bounds one driver call of a test.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomDigest() string { return "sha256:" + randomHex(32) }

// testSecretsNotRecorded: env values and files reach the server (it serves the file
// GREETING_FILE names), yet neither List's recorded spec nor what the runtime records
// about the server holds them.
func (s *suite) testSecretsNotRecorded(t *testing.T) {
	canary := "canary-" + randomHex(8)
	spec := s.spec(s.service(t, "secrets"))
	spec.Env = map[string]string{"GREETING_FILE": "/run/secrets/greeting", "KILN_SECRET": canary + "-env"}
	spec.Files = map[string][]byte{"/run/secrets/greeting": []byte(canary + "-file")}
	spec = s.sealed(spec)
	srv := s.create(t, spec)
	if !s.opts.NoProcess {
		s.waitHealthy(t, srv.Address)
		resp, err := http.Get("http://" + srv.Address + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), canary+"-file") {
			t.Errorf("the server does not serve its secret file: %q", body)
		}
	}
	for _, got := range s.list(t, driver.Selector{Service: spec.Service}) {
		b, _ := json.Marshal(got)
		if strings.Contains(string(b), canary) {
			t.Errorf("List shows a secret value: %s", b)
		}
		if got.SpecHash != spec.Hash() {
			t.Errorf("listed spec hash %s, want %s", got.SpecHash, spec.Hash())
		}
	}
	if s.opts.Recorded != nil {
		if rec := s.opts.Recorded(t, srv.ID); strings.Contains(rec, canary) {
			t.Errorf("the runtime records a secret value: %s", rec)
		}
	}
	if err := s.d.Destroy(ctxFor(t), srv.ID); err != nil {
		t.Fatal(err)
	}
}

// testStop: Stop returns once the server's process has ended (nothing answers at
// its address), the server is listed until Destroy removes it (exited, once the
// runtime is done with it), and Stop of a stopped, destroyed or unknown server is nil.
func (s *suite) testStop(t *testing.T) {
	sp, ok := s.d.(driver.Stopper)
	if !ok || !s.caps.Stop {
		t.Skip("the driver claims no Stop")
	}
	ctx := ctxFor(t)
	svc := s.service(t, "stop")
	srv := s.create(t, s.spec(svc))
	s.waitHealthy(t, srv.Address)
	if err := sp.Stop(ctx, srv.ID); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get("http://" + srv.Address + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("after Stop returned, the server still answers: %s", resp.Status)
	}
	var got driver.Server
	eventually(t, 30*time.Second, func() bool {
		var listed bool
		got, listed = find(s.list(t, driver.Selector{Service: svc}), srv.ID)
		if !listed {
			t.Fatalf("a stopped server is not listed: only Destroy removes it")
		}
		return got.State == driver.StateExited
	}, func() string { return fmt.Sprintf("after Stop the server is listed as %+v, want state exited", got) })
	if err := sp.Stop(ctx, srv.ID); err != nil {
		t.Errorf("Stop of a stopped server: %v, want nil", err)
	}
	if err := s.d.Destroy(ctx, srv.ID); err != nil {
		t.Fatalf("Destroy of a stopped server: %v", err)
	}
	if servers := s.list(t, driver.Selector{Service: svc}); len(servers) != 0 {
		t.Errorf("List after Destroy = %+v, want none", servers)
	}
	if err := sp.Stop(ctx, srv.ID); err != nil {
		t.Errorf("Stop of a destroyed server: %v, want nil", err)
	}
	if err := sp.Stop(ctx, driver.ServerID("kiln-no-such-server-"+randomHex(4))); err != nil {
		t.Errorf("Stop of an unknown ID: %v, want nil", err)
	}
}

// testWait: Wait on a running server blocks until ctx ends; on a server whose process
// fails it returns the non-zero exit code.
func (s *suite) testWait(t *testing.T) {
	w, ok := s.d.(driver.Waiter)
	if !ok {
		t.Skip("the driver is not a Waiter")
	}
	running := s.create(t, s.spec(s.service(t, "wait")))
	ctx, cancel := context.WithTimeout(ctxFor(t), 500*time.Millisecond)
	defer cancel()
	if x, err := w.Wait(ctx, running.ID); err == nil {
		t.Errorf("Wait on a running server returned %v", x)
	}
	spec := s.spec(s.service(t, "waitexit"))
	spec.Env = map[string]string{"PORT": "notaport"}
	spec = s.sealed(spec)
	srv := s.create(t, spec)
	x, err := w.Wait(ctxFor(t), srv.ID)
	if err != nil || x.Code == 0 {
		t.Errorf("Wait on a failing server = %v, %v; want a non-zero exit code", x, err)
	}
}
