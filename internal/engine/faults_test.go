package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/faultdriver"
	"github.com/kiln-build/kiln/internal/rollout"
)

// Applies on a runtime where 10% of calls fail, 10% hang until their timeout and 5%
// are slow either converge or fail with a named error, in bounded time, leaving a
// fleet that the next apply converges. Times are scaled down (call timeout 300 ms,
// slow calls 200 ms, for 2 min and 2 s) to keep the test short; no goroutine leaks.
func TestApplyOnAFaultyRuntime(t *testing.T) {
	leakCheck(t)
	ctx := context.Background()
	faults := []faultdriver.Fault{{P: 0.10}, {P: 0.10, Hang: true}, {P: 0.05, Delay: 200 * time.Millisecond}}
	named := []string{faultdriver.ErrInjected.Error(), rollout.ErrDriverTimeout.Error(), rollout.ErrNoProgress.Error()}
	for seed := uint64(1); seed <= 4; seed++ {
		d := newSimDaemon(t)
		inj := faultdriver.New(d.drv, seed)
		for _, op := range []faultdriver.Op{faultdriver.OpCreate, faultdriver.OpDestroy, faultdriver.OpList} {
			inj.Set(op, faults...)
		}
		e, _, stop := d.startOn(inj.Driver(), func(e *Engine) {
			e.exec.CallTimeout, e.exec.Backoff = 300*time.Millisecond, 20*time.Millisecond
		})
		svc := d.service("web", 4)
		svc.Update = api.Update{Strategy: "rolling", MaxSurge: 1, ProgressDeadline: 10 * time.Second, AutoRollback: true}
		var outcomes []string
		for i, mem := range []int64{64 << 20, 96 << 20} {
			svc.Resources.MemoryBytes = mem
			start := time.Now()
			res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"})
			took := time.Since(start)
			if err != nil {
				if !containsAny(err.Error(), named) {
					t.Errorf("seed %d, apply %d: %v, not a named error", seed, i+1, err)
				}
				outcomes = append(outcomes, "error")
				continue
			}
			r := res.Services[0]
			outcomes = append(outcomes, fmt.Sprintf("%s in %s", r.Outcome, took.Round(10*time.Millisecond)))
			if r.Outcome != "deployed" && !containsAny(r.Detail, named) {
				t.Errorf("seed %d, apply %d: %s: %s, not a named error", seed, i+1, r.Outcome, r.Detail)
			}
		}
		// The faults end: the next apply converges the fleet to its revision.
		for _, op := range []faultdriver.Op{faultdriver.OpCreate, faultdriver.OpDestroy, faultdriver.OpList} {
			inj.Set(op)
		}
		svc.Resources.MemoryBytes = 128 << 20
		res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"})
		if err != nil || !res.OK {
			t.Fatalf("seed %d: the apply after the faults: %v %+v", seed, err, res)
		}
		want, _ := e.serverSpec(svc, res.Services[0].Revision)
		list, _ := d.drv.List(ctx, driver.Selector{Project: "sim"})
		stray := 0
		for _, s := range list {
			if s.SpecHash != want.Hash() {
				stray++
			}
		}
		if len(list) != 4 || stray > 0 {
			t.Errorf("seed %d: after the faults, %d servers, %d not of the current revision", seed, len(list), stray)
		}
		evs, _ := e.Events(ctx, "web", 0)
		retries := 0
		for _, ev := range evs {
			if ev.Type == "retry" {
				retries++
			}
		}
		t.Logf("seed %d: %s; %d calls, faults: %d create, %d destroy, %d list; %d retries",
			seed, strings.Join(outcomes, ", "), inj.Calls(), inj.Injected(faultdriver.OpCreate),
			inj.Injected(faultdriver.OpDestroy), inj.Injected(faultdriver.OpList), retries)
		stop()
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
