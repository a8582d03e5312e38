package harness

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

// events collects a service's events from the daemon's event stream.
type events struct {
	stop func() // ends the stream; idempotent
	mu   sync.Mutex
	all  []api.Event
}

func streamEvents(ctx context.Context, c *api.Client, svc string) *events {
	ctx, cancel := context.WithCancel(ctx)
	ev := &events{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.StreamEvents(ctx, svc, 0, func(e api.Event) {
			ev.mu.Lock()
			ev.all = append(ev.all, e)
			ev.mu.Unlock()
		})
	}()
	ev.stop = sync.OnceFunc(func() { cancel(); <-done })
	return ev
}

// last is the time of the last event of typ at or after since.
func (ev *events) last(typ string, since time.Time) (time.Time, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var t time.Time
	for _, e := range ev.all {
		if e.Type == typ && !e.Time.Before(since) && e.Time.After(t) {
			t = e.Time
		}
	}
	return t, !t.IsZero()
}

// first is the first event of typ at or after since.
func (ev *events) first(typ string, since time.Time) (api.Event, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, e := range ev.all {
		if e.Type == typ && !e.Time.Before(since) {
			return e, true
		}
	}
	return api.Event{}, false
}

// since returns the events of typ at or after t, in the order received.
func (ev *events) since(typ string, t time.Time) []api.Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []api.Event
	for _, e := range ev.all {
		if e.Type == typ && !e.Time.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// count is the number of events after since.
func (ev *events) count(since time.Time) int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	n := 0
	for _, e := range ev.all {
		if e.Time.After(since) {
			n++
		}
	}
	return n
}

// containerEvent is one of Docker's container events, as `docker events` prints it
// with containerEventFormat: the container's name, image and kiln labels.
type containerEvent struct {
	Time     time.Time
	Action   string // create, start, kill, die, stop, destroy, health_status: healthy, …
	Name     string
	Image    string
	Service  string // dev.kiln.service
	Revision string // dev.kiln.revision
}

const containerEventFormat = `{{.TimeNano}}|{{.Action}}|{{index .Actor.Attributes "name"}}|{{index .Actor.Attributes "image"}}|{{index .Actor.Attributes "dev.kiln.service"}}|{{index .Actor.Attributes "dev.kiln.revision"}}`

// parseContainerEvents reads the lines `docker events --format containerEventFormat`
// printed, sorted by time; lines of another shape are left out.
func parseContainerEvents(out string) []containerEvent {
	var evs []containerEvent
	for _, l := range splitLines(out) {
		f := strings.Split(l, "|")
		if len(f) != 6 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		evs = append(evs, containerEvent{Time: time.Unix(0, ns), Action: f[1], Name: f[2], Image: f[3], Service: f[4], Revision: f[5]})
	}
	slices.SortStableFunc(evs, func(a, b containerEvent) int { return a.Time.Compare(b.Time) })
	return evs
}

// containerWatch is a running `docker events` of the containers with one label.
// Docker keeps only its last 256 events, and health checks (exec events) overflow
// that within seconds: they are streamed as they happen.
type containerWatch struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
	once sync.Once
	evs  []containerEvent
}

// watchContainers streams Docker's events of the containers labelled label (k=v)
// from now on, until stop.
func (e *Env) watchContainers(ctx context.Context, label string) (*containerWatch, error) {
	now := time.Now()
	since := fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond())
	w := &containerWatch{done: make(chan error, 1)}
	w.cmd = exec.CommandContext(ctx, "docker", "events", "--since", since, "--filter", "type=container", "--filter", "label="+label, "--format", containerEventFormat)
	w.cmd.Stdout = &w.out
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("docker events: %w", err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	return w, nil
}

// stop ends the stream and returns the events it carried; idempotent.
func (w *containerWatch) stop() []containerEvent {
	w.once.Do(func() {
		w.cmd.Process.Kill()
		<-w.done
		w.evs = parseContainerEvents(w.out.String())
	})
	return w.evs
}

// rolloutSteps are the metrics whereTimeGoes computes, in the order a rollout goes
// through them.
var rolloutSteps = []string{"first new server created", "step between new servers", "create → start", "ready", "old server stop", "last old server SIGTERM"}

// whereTimeGoes reads a rollout issued at t0 out of Docker's events of its containers,
// in seconds: when the first new server was created; the median time between the
// creations of two consecutive new servers; the median create → start of a new
// server; the median "ready": start → first healthy Docker health check, or for kiln
// (which health-checks servers itself) the i-th new server's start → the SIGTERM of
// the i-th old server, which kiln sends once the new one is admitted; the median
// SIGTERM → stopped of an old server; and when the last old server got its SIGTERM.
// isNew tells the new servers from the old. A metric that cannot be computed is left
// out.
func whereTimeGoes(evs []containerEvent, t0 time.Time, isNew func(containerEvent) bool, kiln bool) map[string]float64 {
	var creates, starts, kills []time.Time
	created, started, healthy, killed, stopped := map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	for _, ev := range evs {
		if ev.Time.Before(t0) {
			continue
		}
		fresh := isNew(ev)
		switch {
		case fresh && ev.Action == "create":
			creates = append(creates, ev.Time)
			created[ev.Name] = ev.Time
		case fresh && ev.Action == "start":
			starts = append(starts, ev.Time)
			started[ev.Name] = ev.Time
		case fresh && ev.Action == "health_status: healthy":
			if _, ok := healthy[ev.Name]; !ok {
				healthy[ev.Name] = ev.Time
			}
		case !fresh && ev.Action == "kill":
			if _, ok := killed[ev.Name]; !ok {
				kills = append(kills, ev.Time)
				killed[ev.Name] = ev.Time
			}
		case !fresh && ev.Action == "stop":
			_, wasKilled := killed[ev.Name]
			if _, ok := stopped[ev.Name]; wasKilled && !ok {
				stopped[ev.Name] = ev.Time
			}
		}
	}
	m := map[string]float64{}
	set := func(k string, v []float64) {
		if len(v) > 0 {
			m[k] = Median(v)
		}
	}
	if len(creates) > 0 {
		m["first new server created"] = creates[0].Sub(t0).Seconds()
	}
	var steps []float64
	for i := 1; i < len(creates); i++ {
		steps = append(steps, creates[i].Sub(creates[i-1]).Seconds())
	}
	set("step between new servers", steps)
	set("create → start", pairs(created, started))
	ready := pairs(started, healthy)
	if len(ready) == 0 && kiln {
		for i := 0; i < len(starts) && i < len(kills); i++ {
			ready = append(ready, kills[i].Sub(starts[i]).Seconds())
		}
	}
	set("ready", ready)
	set("old server stop", pairs(killed, stopped))
	if len(kills) > 0 {
		m["last old server SIGTERM"] = kills[len(kills)-1].Sub(t0).Seconds()
	}
	return m
}

// pairs is to[k] − from[k] in seconds for every k in both, in key order.
func pairs(from, to map[string]time.Time) []float64 {
	var out []float64
	for _, k := range slices.Sorted(maps.Keys(to)) {
		if f, ok := from[k]; ok {
			out = append(out, to[k].Sub(f).Seconds())
		}
	}
	return out
}
