package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/spec"
)

// canaryDoor is the in-memory door with a canary: what each Trial set, in order, and
// the canary's servers.
type canaryDoor struct {
	*door
	mu     sync.Mutex
	canary []string
	log    []string // "trial W N" and "update +A -R", in order
}

func (d *canaryDoor) Trial(ctx context.Context, addrs []string, weight float64, sticky string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.canary = slices.Clone(addrs)
	d.log = append(d.log, fmt.Sprintf("trial %g %d", weight, len(addrs)))
	return ctx.Err()
}

func (d *canaryDoor) Update(ctx context.Context, add, remove []string) error {
	d.mu.Lock()
	d.canary = slices.DeleteFunc(d.canary, func(a string) bool { return slices.Contains(add, a) || slices.Contains(remove, a) })
	d.log = append(d.log, fmt.Sprintf("update +%d -%d", len(add), len(remove)))
	d.mu.Unlock()
	return d.door.Update(ctx, add, remove)
}

func (d *canaryDoor) Has(addr string) bool {
	d.mu.Lock()
	in := slices.Contains(d.canary, addr)
	d.mu.Unlock()
	return in || d.door.Has(addr)
}

func (d *canaryDoor) trials() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log)
}

func canarySettings() Settings {
	return Settings{Strategy: "canary", MaxSurge: 1, Canary: &spec.Canary{Steps: []spec.CanaryStep{
		{Weight: 10, Duration: time.Minute}, {Pause: true}, {Weight: 50, Duration: time.Minute},
	}}}
}

// canaryRig is a rig whose door takes a canary, at revision 1 with 4 servers.
func canaryRig(t *testing.T) (*rig, *canaryDoor) {
	r := newRig(t)
	cd := &canaryDoor{door: r.door}
	if err := r.exec.Run(t.Context(), cd, target(1, 4, canarySettings())); err != nil {
		t.Fatalf("first rollout: %v", err)
	}
	if got := r.servers(); got[1] != 4 || len(got) != 1 {
		t.Fatalf("a first canary rollout has nothing to compare with and starts every server: got %v", got)
	}
	if got := cd.trials(); !slices.Equal(got, []string{"update +4 -0"}) {
		t.Fatalf("a first rollout changed the door by %q, want one update of 4 servers and no canary", got)
	}
	cd.log = nil
	r.arm()
	return r, cd
}

func TestCanaryPromoted(t *testing.T) {
	r, cd := canaryRig(t)
	var steps []CanaryStep
	r.exec.Analyze = func(ctx context.Context, tg Target, st CanaryStep) error {
		steps = append(steps, st)
		// -1 counts those out of the rotation: the canary's, which the door holds apart.
		if got := r.servers(); got[2] != len(st.Servers) || got[1] != 4 || got[-1] != len(st.Servers) {
			t.Errorf("step %d: servers by revision %v, want 4 of revision 1 in rotation and %d of the canary beside it", st.Index+1, got, len(st.Servers))
		}
		cd.mu.Lock()
		if !slices.Equal(cd.canary, addresses(st.Servers)) {
			t.Errorf("step %d: the door's canary is %v, want %v", st.Index+1, cd.canary, addresses(st.Servers))
		}
		cd.mu.Unlock()
		return nil
	}
	if err := r.exec.Run(t.Context(), cd, target(2, 4, canarySettings())); err != nil {
		t.Fatal(err)
	}
	if got := r.servers(); got[2] != 4 || len(got) != 1 {
		t.Errorf("after the last step: servers by revision %v, want 4 of revision 2, all in rotation", got)
	}
	var weights []float64
	var sizes []int
	for _, st := range steps {
		weights, sizes = append(weights, st.Weight), append(sizes, len(st.Servers))
		if st.From != 1 || st.Of != 3 {
			t.Errorf("step %d: from revision %d, of %d steps; want 1 and 3", st.Index+1, st.From, st.Of)
		}
	}
	if !slices.Equal(weights, []float64{10, 10, 50}) || !slices.Equal(sizes, []int{1, 1, 2}) {
		t.Errorf("steps at weights %v with %v servers, want [10 10 50] with [1 1 2] (a pause keeps the weight before)", weights, sizes)
	}
	want := []string{"trial 10 1", "trial 10 1", "trial 50 2", "update +4 -4", "trial 0 0"}
	if got := cd.trials(); !slices.Equal(got, want) {
		t.Errorf("door changes %q, want %q: the switch to the new set in one change, then the canary ended", got, want)
	}
	if r.most > 8 || r.door.fewest < 4 {
		t.Errorf("at worst %d servers and %d in rotation; bounds 8 and 4", r.most, r.door.fewest)
	}
}

func TestCanaryAborted(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int // the step that fails
		err  error
	}{
		{"analysis fails the first step", 0, ErrCanaryFailed},
		{"aborted by hand in the pause", 1, ErrCanaryAborted},
		{"analysis fails the last step", 2, ErrCanaryFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, cd := canaryRig(t)
			failing := 0
			r.exec.CanaryFailing = func(tg Target, err error) {
				if log := cd.trials(); len(log) > 0 && log[len(log)-1] != fmt.Sprintf("trial %g %d", []float64{10, 10, 50}[tc.at], []int{1, 1, 2}[tc.at]) {
					t.Errorf("told of the abort after the door changed: %q", log)
				}
				failing++
			}
			r.exec.Analyze = func(ctx context.Context, tg Target, st CanaryStep) error {
				if st.Index == tc.at {
					return fmt.Errorf("%w: error ratio 20%%", tc.err)
				}
				return nil
			}
			err := r.exec.Run(t.Context(), cd, target(2, 4, canarySettings()))
			if !errors.Is(err, tc.err) {
				t.Fatalf("Run = %v, want %v", err, tc.err)
			}
			if got := r.servers(); got[1] != 4 || len(got) != 1 {
				t.Errorf("after the abort: servers by revision %v, want the 4 of revision 1 alone, in rotation", got)
			}
			log := cd.trials()
			// The canary's share goes back to stable (weight 0) before its servers are
			// drained and destroyed, then the canary ends.
			i := slices.Index(log, fmt.Sprintf("trial 0 %d", []int{1, 1, 2}[tc.at]))
			if i < 0 || i+1 >= len(log) || log[i+1] != "update +0 -1" || log[len(log)-1] != "trial 0 0" {
				t.Errorf("door changes %q: want the weight set to 0, then the canary's servers drained, then the canary ended", log)
			}
			if failing != 1 {
				t.Errorf("CanaryFailing called %d times, want once", failing)
			}
			if r.eventCount("aborted") != 1 {
				t.Errorf("%d aborted events, want 1", r.eventCount("aborted"))
			}
			if r.door.fewest < 4 {
				t.Errorf("%d servers in rotation at worst, want 4", r.door.fewest)
			}
		})
	}
}

// A canary a stop interrupted is tried again from its first step with the servers it
// had; nothing is duplicated.
func TestCanaryResumed(t *testing.T) {
	r, cd := canaryRig(t)
	ctx, cancel := context.WithCancel(t.Context())
	r.exec.Analyze = func(ctx context.Context, tg Target, st CanaryStep) error {
		if st.Index == 2 {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	if err := r.exec.Run(ctx, cd, target(2, 4, canarySettings())); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want it cancelled", err)
	}
	if got := r.servers(); got[1] != 4 || got[2] != 2 {
		t.Fatalf("after the stop: %v, want the 4 old servers and the canary's 2 left as they were", got)
	}
	var sizes []int
	r.exec.Analyze = func(ctx context.Context, tg Target, st CanaryStep) error {
		sizes = append(sizes, len(st.Servers))
		return nil
	}
	if err := r.exec.Run(t.Context(), cd, target(2, 4, canarySettings())); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sizes, []int{2, 2, 2}) {
		t.Errorf("the resumed canary had %v servers at its steps, want its 2 at every step", sizes)
	}
	if got := r.servers(); got[2] != 4 || len(got) != 1 {
		t.Errorf("servers by revision %v, want 4 of revision 2", got)
	}
	if r.most > 8 {
		t.Errorf("%d servers at worst, want at most 8", r.most)
	}
}

// A canary server that fails its health gate aborts the canary before any request.
func TestCanaryServerFailsGate(t *testing.T) {
	r, cd := canaryRig(t)
	r.unhealthy = map[int64]func(ctx context.Context) error{2: func(ctx context.Context) error { return errBoom }}
	called := false
	r.exec.Analyze = func(ctx context.Context, tg Target, st CanaryStep) error { called = true; return nil }
	err := r.exec.Run(t.Context(), cd, target(2, 4, canarySettings()))
	if !errors.Is(err, ErrServerFailed) {
		t.Fatalf("Run = %v, want ErrServerFailed", err)
	}
	if called {
		t.Error("a canary whose server failed its gate was analysed")
	}
	if got := r.servers(); got[1] != 4 || len(got) != 1 {
		t.Errorf("servers by revision %v, want the 4 of revision 1 alone", got)
	}
}
