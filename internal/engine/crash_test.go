package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/store"
)

// errCrashed is what every write and driver call of a crashed engine fails with: from
// the crash on, it changes nothing, as a process that died would not.
var errCrashed = errors.New("crashed (fault injection)")

// crasher counts the points of a rollout (state commits and driver calls) and crashes
// the engine at the K-th: its context is cancelled and that write or call, and every
// one after it, fails. Every point samples the fleet.
type crasher struct {
	fleet *fleet
	mu    sync.Mutex
	n     int    // points so far
	k     int    // crash at point k; 0: never
	at    string // the point it crashed at
	stop  context.CancelFunc
	dead  bool
}

func (c *crasher) point(what string) error {
	c.fleet.sample()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errCrashed
	}
	c.n++
	if c.n == c.k {
		c.dead, c.at = true, what
		c.stop()
		return errCrashed
	}
	return nil
}

// crashRow is one line of the table TestCrashAtEveryStep prints.
type crashRow struct {
	k             int
	point         string
	most, listed  int // servers running, and listed (stopped ones awaiting removal too)
	fewest        int
	orphans, lost int
	reapplied     bool
	servers       int
}

const (
	crashReplicas = 10
	crashSurge    = 1
	crashUnavail  = 0
)

// A 10-replica rolling update (max_surge 1, max_unavailable 0) stopped at its K-th
// state commit or driver call, for every K of a clean run, then finished by a new
// engine on the same state file and the same servers: at no time more than 11 servers
// running, 12 listed (one stopped, awaiting removal) or fewer than 10 healthy ones,
// and at the end no orphan and no lost record.
func TestCrashAtEveryStep(t *testing.T) {
	leakCheck(t)
	clean := crashRun(t, 0)
	total := clean.k
	t.Logf("a clean run has %d points (state commits and driver calls)", total)
	// Every 7th K by default; every K with KILN_CRASH_SWEEP=full, which takes about a
	// minute, and several with -race on two cores.
	step := 7
	if os.Getenv("KILN_CRASH_SWEEP") == "full" {
		step = 1
	}
	rows := []crashRow{}
	for k := 1; k <= total; k += step {
		r := crashRun(t, k)
		rows = append(rows, r)
		if t.Failed() {
			break
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%4s  %-34s  %7s  %6s  %7s  %7s  %4s  %s\n", "K", "point", "running", "listed", "healthy", "orphans", "lost", "reapplied")
	for _, r := range rows {
		fmt.Fprintf(&b, "%4d  %-34s  %7d  %6d  %7d  %7d  %4d  %v\n", r.k, r.point, r.most, r.listed, r.fewest, r.orphans, r.lost, r.reapplied)
	}
	t.Log(b.String())
}

// crashRun deploys revision 1, rolls out revision 2 and crashes at point k (never when
// 0, and then row.k is the number of points), restarts and converges; it checks the
// bounds and the end state, and returns what it saw.
func crashRun(t *testing.T, k int) crashRow {
	t.Helper()
	ctx := context.Background()
	d := newSimDaemon(t)
	// This K's servers stop when its run ends, after its engines (deferred below), and
	// not with the sweep, which would otherwise keep some 800 serving.
	defer func() {
		d.drv.Close()
		probeClient.CloseIdleConnections()
	}()
	fl := newFleet(d, "web")
	c := &crasher{fleet: fl}
	inj := faultdriver.New(d.drv, 1)
	armed := false
	var armMu sync.Mutex
	hook := func(what string) error {
		armMu.Lock()
		on := armed
		armMu.Unlock()
		if !on {
			return nil
		}
		return c.point(what)
	}
	inj.OnCall(func(_ context.Context, call faultdriver.Call) error { return hook("driver " + string(call.Op)) })
	d.state.SetWriteHook(func(_ context.Context, op string) error { return hook("commit " + op) })
	defer d.state.SetWriteHook(nil)

	e1, cancel1, stop1 := d.startOn(inj.Driver(), nil)
	svc := d.service("web", crashReplicas)
	svc.Update = api.Update{Strategy: "rolling", MaxSurge: crashSurge, MaxUnavailable: crashUnavail, ProgressDeadline: time.Minute}
	if res, err := e1.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"}); err != nil || !res.OK {
		t.Fatalf("K=%d: deploying revision 1: %v %+v", k, err, res)
	}
	// Revision 2: a new memory limit, so every server is replaced.
	svc2 := svc
	svc2.Resources.MemoryBytes = 96 << 20
	c.k, c.stop = k, cancel1
	armMu.Lock()
	armed = true
	armMu.Unlock()
	res, applyErr := e1.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc2}, User: "test"})
	stop1() // as after a crash: Start returns once the work in flight has ended
	c.mu.Lock()
	row := crashRow{k: k, point: c.at}
	if k == 0 {
		row.k = c.n
	}
	crashed := c.dead
	c.mu.Unlock()
	if k > 0 && !crashed {
		row.point = "(not reached)"
	}
	if !crashed && (applyErr != nil || !res.OK) {
		t.Fatalf("K=%d: a rollout without a crash: %v %+v", k, applyErr, res)
	}
	armMu.Lock()
	armed = false // the new engine runs without faults, but still samples the fleet
	armMu.Unlock()
	inj.OnCall(func(_ context.Context, _ faultdriver.Call) error { fl.sample(); return nil })
	d.state.SetWriteHook(func(_ context.Context, _ string) error { fl.sample(); return nil })

	e2, _, stop2 := d.startOn(inj.Driver(), nil)
	defer stop2()
	// Wait until nothing is running: a resumed rollout, or a resumed rollback.
	if !within(30*time.Second, func() bool {
		rs, err := d.state.RunningRollouts(ctx)
		return err == nil && len(rs) == 0
	}) {
		rs, _ := d.state.RunningRollouts(ctx)
		revs, _ := d.state.Revisions(ctx, "web")
		evs, _ := d.state.Events(ctx, "web", 0, 1000)
		for _, ev := range evs {
			t.Logf("event %s: %s", ev.Type, ev.Message)
		}
		buf := make([]byte, 1<<20)
		t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		t.Fatalf("K=%d (%s): the resumed rollout did not end: running %+v, revisions %+v", k, c.at, rs, revs)
	}
	// The apply was not acknowledged (it failed), or was rolled back on restart: the
	// client applies again, as it would.
	if cur, ok := e2.currentRevision(ctx, "web"); !ok || !sameService(cur, svc2) || cur.Outcome != store.OutcomeDeployed {
		row.reapplied = true
		if res, err := e2.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc2}, User: "test"}); err != nil || !res.OK {
			t.Errorf("K=%d (%s): applying again after the restart: %v %+v", k, row.point, err, res)
		}
	}
	// The new engine re-adopts the servers in the background: wait for it to converge
	// (a timeout leaves the orphans counted below).
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		if o, n := crashOrphans(t, d, e2, svc2); o == 0 && n == crashReplicas {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	row.most, row.listed, row.fewest = fl.worst()
	row.orphans, row.servers = crashOrphans(t, d, e2, svc2)
	row.lost = crashLost(t, d)
	if row.lost > 0 { // what the state holds, to tell why
		revs, _ := d.state.Revisions(ctx, "web")
		for _, r := range revs {
			t.Logf("revision %d: outcome %s (%q), applied by %q", r.Number, r.Outcome, r.Detail, r.AppliedBy)
		}
		evs, _ := d.state.Events(ctx, "web", 0, 1000)
		for _, ev := range evs {
			t.Logf("event %s: %s", ev.Type, ev.Message)
		}
	}
	most, listed := crashReplicas+crashSurge, crashReplicas+2*crashSurge
	if row.most > most || row.listed > listed || row.fewest < crashReplicas-crashUnavail || row.orphans > 0 || row.lost > 0 || row.servers != crashReplicas {
		t.Errorf("K=%d (%s): at worst %d servers running, %d listed and %d healthy (bounds %d, %d, %d); at the end %d servers, %d orphans, %d lost records",
			k, row.point, row.most, row.listed, row.fewest, most, listed, crashReplicas-crashUnavail, row.servers, row.orphans, row.lost)
	}
	return row
}

// within reports whether cond holds within timeout, polling it.
func within(timeout time.Duration, cond func() bool) bool {
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			return false
		}
	}
	return true
}

// crashOrphans counts the servers listed at the end that are not of the target
// revision's spec (servers of neither revision, or left of the old one), and how many
// servers there are.
func crashOrphans(t *testing.T, d *simDaemon, e *Engine, svc api.Service) (orphans, servers int) {
	ctx := context.Background()
	cur, ok := e.currentRevision(ctx, svc.Name)
	if !ok {
		t.Errorf("no current revision of %s", svc.Name)
		return 0, 0
	}
	want, err := e.serverSpec(svc, cur.Number)
	if err != nil {
		t.Fatal(err)
	}
	list, err := d.drv.List(ctx, driver.Selector{Project: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	door := e.doors.Get(svc.Name)
	for _, s := range list {
		if s.SpecHash != want.Hash() || door == nil || !door.Has(s.Address) {
			orphans++
		}
	}
	return orphans, len(list)
}

// crashLost counts the records missing at the end: every revision has an outcome,
// no rollout is left running, the current revision is deployed by a rollout that
// succeeded, and its deployed event is there.
func crashLost(t *testing.T, d *simDaemon) (lost int) {
	ctx := context.Background()
	sv, err := d.state.Service(ctx, "web")
	if err != nil {
		return 1
	}
	revs, err := d.state.Revisions(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range revs {
		if r.Outcome == store.OutcomePending {
			t.Logf("revision %d has no outcome", r.Number)
			lost++
		}
		if r.Number == sv.Current && r.Outcome != store.OutcomeDeployed {
			lost++
		}
	}
	rollouts, err := d.state.Rollouts(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	succeeded := false
	for _, r := range rollouts {
		if r.State == store.RolloutRunning {
			lost++
		}
		succeeded = succeeded || r.To == sv.Current && r.State == store.RolloutSucceeded
	}
	if !succeeded {
		lost++
	}
	evs, err := d.state.Events(ctx, "web", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	deployed := false
	for _, ev := range evs {
		deployed = deployed || ev.Type == "deployed" && strings.Contains(ev.Message, fmt.Sprintf("revision %d ", sv.Current))
	}
	if !deployed {
		lost++
	}
	return lost
}
