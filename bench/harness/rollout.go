package harness

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

// Options are the settings every scenario takes.
type Options struct {
	Runs int
	// Systems, if set, limits a scenario to these of its systems (by name), and Cases
	// to these of its cases.
	Systems, Cases []string
}

func (o Options) want(system string) bool {
	if len(o.Systems) == 0 {
		return true
	}
	for _, s := range o.Systems {
		if s == system {
			return true
		}
	}
	return false
}

// newResult starts the result of a scenario: the machine and kiln are described now.
func (e *Env) newResult(ctx context.Context, scenario, title string, o Options) *Result {
	return &Result{Scenario: scenario, Title: title, Date: time.Now().UTC(), Machine: Describe(ctx), Kiln: DescribeKiln(ctx, e.Source), Runs: o.Runs}
}

func (e *Env) finish(ctx context.Context, r *Result) *Result {
	r.Machine.LoadAfter = Busy(ctx)
	r.WallSeconds = time.Since(r.Date).Seconds()
	return r
}

// rolloutReplicas is the size of the fleet the rollout scenario rolls.
const rolloutReplicas = 4

// rolloutSystem is one row of the rollout scenario.
type rolloutSystem struct {
	name       string
	minHealthy string // kiln's; "" for Swarm
	health     bool   // Swarm: the image has a HEALTHCHECK
	label      string
}

var rolloutSystems = []rolloutSystem{
	{name: "kiln-mh0", minHealthy: "0s", label: "kiln: health every 1s, min_healthy 0s"},
	{name: "swarm-hc", health: true, label: "Swarm: HEALTHCHECK every 1s, monitor 1s"},
	{name: "kiln", minHealthy: "1s", label: "kiln: health every 1s, min_healthy 1s"},
	{name: "swarm", label: "Swarm: no health check, monitor 1s"},
}

// Rollout rolls a service of 4 servers of the example from one version to the other
// (1 → 2 → 1 …, so every run replaces every server), one server at a time, with kiln
// and with Docker Swarm, in the same run; kiln under load through its front door.
func Rollout(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "rollout", "Rolling update: kiln vs Docker Swarm", o)
	r.Notes = []string{
		fmt.Sprintf("%d servers of the example (examples/hello), rolled one at a time from one version to the other (1 → 2 → 1 …); both versions are baked before the timed runs.", rolloutReplicas),
		"*rollout time*: from issuing the update to the command returning: `kiln apply` (it waits for the rollout; includes the CLI's no-op bake check), `docker service update --image … --no-resolve-image --detach=false` (it waits for convergence; its `UpdateStatus.State` must then be `completed`). Afterwards every server must run the new version (kiln: `GET /v1/status` through the API client; Swarm: `docker service ps`).",
		"*last admitted*: kiln's own view, from its event stream (`GET /v1/events/stream`): the last `admitted` event of the run, after the update was issued.",
		"kiln: `update { strategy = \"rolling\", max_surge = 1, min_healthy = … }`, health check every 1s; `kiln up` deploys version 1, each run is `KILN_VAR_version=V kiln apply`. Load: 500 requests/s through the front door (open loop, keep-alive), from 1 s before the update to 2 s after it returned; *failed requests* are transport errors + answers outside 2xx.",
		"Swarm: single node, `docker service create --endpoint-mode dnsrr --no-resolve-image --update-order start-first --update-parallelism 1 --update-delay 0s --update-monitor 1s --update-failure-action rollback`, on the very image kiln baked (`kiln bake --load`, retagged); swarm-hc adds a static health-check binary and `HEALTHCHECK --interval=1s --timeout=1s --retries=1` (a derived image), which Swarm waits for. Swarm is timed without load: its routing mesh needs IPVS, which this kernel lacks, and bench/rollout.sh's HAProxy front is not ported (see bench/README.md).",
		"The machine is shared with other engineers running tests: figures are noisy; compare medians of the same run.",
	}
	var swarmLeave func()
	defer func() {
		if swarmLeave != nil {
			swarmLeave()
		}
	}()
	var images [3]string // the Swarm images of versions 1 and 2 (index 1, 2)
	var hcImages [3]string
	for _, sys := range rolloutSystems {
		if !o.want(sys.name) {
			continue
		}
		if sys.minHealthy != "" {
			if err := e.rolloutKiln(ctx, r, o, sys); err != nil {
				r.Failf("%s: %v", sys.name, err)
			}
			continue
		}
		if swarmLeave == nil {
			leave, err := e.Swarm(ctx)
			if err != nil {
				r.Failf("%s: %v", sys.name, err)
				continue
			}
			swarmLeave = leave
			p, err := e.Project(ctx, "rollout-swarm-img", "bench-hello", ServiceOptions{Name: e.ID + "-img", Replicas: 1, Interval: "1s", Port: 1})
			if err != nil {
				return nil, err
			}
			for v := 1; v <= 2; v++ {
				images[v] = fmt.Sprintf("%s-hello:v%d", e.ID, v)
				if err := p.LoadImage(ctx, strconv.Itoa(v), images[v]); err != nil {
					return nil, err
				}
				defer e.Docker(context.WithoutCancel(ctx), "rmi", images[v])
				hcImages[v] = fmt.Sprintf("%s-hello-hc:v%d", e.ID, v)
				if err := e.HealthImage(ctx, images[v], hcImages[v], "1s", 1); err != nil {
					return nil, err
				}
				defer e.Docker(context.WithoutCancel(ctx), "rmi", hcImages[v])
			}
		}
		imgs := images
		if sys.health {
			imgs = hcImages
		}
		if err := e.rolloutSwarm(ctx, r, o, sys, imgs); err != nil {
			r.Failf("%s: %v", sys.name, err)
		}
	}
	if v, ok := r.AddRatio("kiln min_healthy 0s / Swarm with HEALTHCHECK", "kiln-mh0", "swarm-hc", "rollout time"); ok {
		r.AddGoal(fmt.Sprintf("rolling update of %d with a health gate ≤ 0.3× Swarm with HEALTHCHECK", rolloutReplicas), v, "×", 0.3, false)
	}
	if v, ok := r.AddRatio("kiln min_healthy 1s / Swarm without health check", "kiln", "swarm", "rollout time"); ok {
		r.AddGoal(fmt.Sprintf("rolling update of %d with min_healthy 1s ≤ 0.6× Swarm without health check", rolloutReplicas), v, "×", 0.6, false)
	}
	var failed float64
	var any bool
	for _, s := range r.Series {
		if s.Metric == "failed requests" {
			failed += s.Summary.Sum
			any = true
		}
	}
	if any {
		r.AddGoal("0 failed requests during kiln rollouts", failed, "", 0, false)
	}
	return e.finish(ctx, r), nil
}

func (e *Env) rolloutKiln(ctx context.Context, r *Result, o Options, sys rolloutSystem) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	svc := e.ID + "-" + sys.name
	p, err := e.Project(ctx, "rollout-"+sys.name, "bench-hello", ServiceOptions{Name: svc, Replicas: rolloutReplicas, Interval: "1s", MinHealthy: sys.minHealthy, Port: port})
	if err != nil {
		return err
	}
	if _, err := p.Kiln(ctx, "2", "bake"); err != nil {
		return err
	}
	e.Log.Info("kiln up", "system", sys.name, "replicas", rolloutReplicas)
	d, err := p.Up(ctx, 3*time.Minute)
	if err != nil {
		return err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	evs := streamEvents(ctx, d.Client, svc)
	defer evs.stop()
	door := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for run := 1; run <= o.Runs; run++ {
		v := strconv.Itoa(run%2 + 1)
		load := StartLoad(ctx, door, 500)
		time.Sleep(time.Second)
		t0 := time.Now()
		actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err := p.Kiln(actx, v, "apply")
		dt := time.Since(t0)
		cancel()
		if err == nil {
			err = e.kilnRolled(ctx, d, svc)
		}
		time.Sleep(2 * time.Second)
		counts := load.Stop()
		if err != nil {
			r.Failf("%s run %d: %v", sys.name, run, err)
			continue
		}
		r.Add(sys.name, "rollout time", "s", dt.Seconds())
		if last, ok := evs.last("admitted", t0); ok {
			r.Add(sys.name, "last admitted", "s", last.Sub(t0).Seconds())
		}
		r.Add(sys.name, "failed requests", "", float64(counts.Failed()))
		r.Add(sys.name, "requests sent", "", float64(counts.Sent))
		if counts.Failed() > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%s run %d: %d failed requests, e.g. %v", sys.name, run, counts.Failed(), counts.Samples))
		}
		e.Log.Info("rollout", "system", sys.name, "run", run, "seconds", dt.Seconds(), "failed", counts.Failed(), "sent", counts.Sent)
	}
	return nil
}

// kilnRolled checks that every server of svc runs the service's current revision and
// is healthy.
func (e *Env) kilnRolled(ctx context.Context, d *Daemon, svc string) error {
	st, err := d.Client.Status(ctx)
	if err != nil {
		return err
	}
	s, _ := service(st, svc)
	for _, srv := range s.Servers {
		if srv.Revision != s.Revision || !srv.InService {
			return fmt.Errorf("after apply, server %s is of revision %d (current %d), in service %v", srv.Name, srv.Revision, s.Revision, srv.InService)
		}
	}
	if s.Healthy != rolloutReplicas || len(s.Servers) != rolloutReplicas {
		return fmt.Errorf("after apply, %d of %d servers healthy (%d listed)", s.Healthy, rolloutReplicas, len(s.Servers))
	}
	return nil
}

func (e *Env) rolloutSwarm(ctx context.Context, r *Result, o Options, sys rolloutSystem, imgs [3]string) error {
	name := e.ID + "-" + sys.name
	e.Log.Info("docker service create", "system", sys.name, "replicas", rolloutReplicas)
	if _, err := e.Docker(ctx, "service", "create", "--name", name, "--replicas", strconv.Itoa(rolloutReplicas),
		"--endpoint-mode", "dnsrr", "--no-resolve-image", "--update-order", "start-first", "--update-parallelism", "1",
		"--update-delay", "0s", "--update-monitor", "1s", "--update-failure-action", "rollback", "--detach=false", "--quiet", imgs[1]); err != nil {
		return err
	}
	defer e.RemoveSwarmService(ctx, name)
	for run := 1; run <= o.Runs; run++ {
		v := run%2 + 1
		t0 := time.Now()
		_, err := e.Docker(ctx, "service", "update", "--image", imgs[v], "--no-resolve-image", "--detach=false", name)
		dt := time.Since(t0)
		if err == nil {
			err = e.swarmRolled(ctx, name, imgs[v])
		}
		if err != nil {
			r.Failf("%s run %d: %v", sys.name, run, err)
			continue
		}
		r.Add(sys.name, "rollout time", "s", dt.Seconds())
		e.Log.Info("rollout", "system", sys.name, "run", run, "seconds", dt.Seconds())
	}
	return nil
}

// swarmRolled checks that the update completed and every task desired running runs
// image.
func (e *Env) swarmRolled(ctx context.Context, name, image string) error {
	state, err := e.Docker(ctx, "service", "inspect", "-f", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", name)
	if err != nil {
		return err
	}
	if s := fields(state); len(s) != 1 || s[0] != "completed" {
		return fmt.Errorf("update state %q", state)
	}
	out, err := e.Docker(ctx, "service", "ps", name, "--filter", "desired-state=running", "--format", "{{.Image}}|{{.CurrentState}}")
	if err != nil {
		return err
	}
	var good, total int
	for _, l := range splitLines(out) {
		total++
		if img, st, _ := cut(l, "|"); img == image && len(st) >= 7 && st[:7] == "Running" {
			good++
		}
	}
	if total != rolloutReplicas || good != rolloutReplicas {
		return fmt.Errorf("%d tasks desired running, %d of them running %s", total, good, image)
	}
	return nil
}

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

// wantCase reports whether a case (of the bake scenario) is asked for: all of them
// unless -cases names some.
func (o Options) wantCase(c string) bool {
	if len(o.Cases) == 0 {
		return true
	}
	for _, x := range o.Cases {
		if x == c {
			return true
		}
	}
	return false
}
