package harness

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

const healReplicas = 4

// Heal kills one of 4 servers (`docker kill`) and times until a healthy replacement
// serves, with kiln under load through its front door and with Docker Swarm.
func Heal(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "heal", "Healing a killed server: kiln vs Docker Swarm", o)
	r.Notes = []string{
		fmt.Sprintf("`docker kill` of one of %d servers, the clock started just before it; kill *i* hits service *i* of %d services of %d servers in one `kiln up` (kiln backs a service off after 3 heals within a minute, which repeated kills of one service would measure).", healReplicas, o.Runs, healReplicas),
		"kiln *replacement in rotation*: polled every 20 ms through the API client (`GET /v1/status`): the killed server gone, 4 servers running, healthy and in rotation, one of them new; then one request through the front door answered 2xx. *heal noticed* and *replacement admitted* are the first `heal` and `admitted` events after the kill, from the event stream.",
		"kiln *failed requests*: 150 requests/s through the service's front door, from 1 s before the kill to 1 s after recovery: transport errors + answers outside 2xx.",
		"Swarm: `docker service create --replicas 4 --publish mode=host,target=8080 --no-resolve-image --health-interval 1s --health-timeout 1s --health-retries 3 [--restart-delay 0s]` on the kiln-baked image with a static health-check binary and an exec-form HEALTHCHECK (the image has no shell); recovered when `docker ps` shows 4 healthy containers of the service, none the killed one, and the new one answers `GET /` on its published port (polled through the docker CLI, about 50 ms a poll). swarm keeps Swarm's default restart delay (5 s), swarm-d0 sets it to 0 s. No load: the routing mesh needs IPVS, which this kernel lacks.",
		"The machine is shared with other engineers running tests: figures are noisy.",
	}
	if o.want("kiln") {
		if err := e.healKiln(ctx, r, o); err != nil {
			r.Failf("kiln: %v", err)
		}
	}
	if o.want("swarm") || o.want("swarm-d0") {
		if err := e.healSwarm(ctx, r, o); err != nil {
			r.Failf("swarm: %v", err)
		}
	}
	if m, ok := r.Median("kiln", "replacement in rotation"); ok {
		r.AddGoal("a killed server replaced in < 0.6 s", m, "s", 0.6, true)
	}
	r.AddRatio("kiln / Swarm with restart delay 0s", "kiln", "swarm-d0", "replacement in rotation")
	for _, s := range r.Series {
		if s.System == "kiln" && s.Metric == "failed requests" {
			r.AddGoal("0 failed requests through heals", s.Summary.Sum, "", 0, false)
		}
	}
	return e.finish(ctx, r), nil
}

func (e *Env) healKiln(ctx context.Context, r *Result, o Options) error {
	var svcs []ServiceOptions
	for i := 1; i <= o.Runs; i++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		svcs = append(svcs, ServiceOptions{Name: fmt.Sprintf("%s-heal-%d", e.ID, i), Replicas: healReplicas, Interval: "1s", Port: port})
	}
	p, err := e.Project(ctx, "heal-kiln", "bench-heal-hello", svcs...)
	if err != nil {
		return err
	}
	e.Log.Info("kiln up", "services", len(svcs), "replicas", healReplicas)
	d, err := p.Up(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	evs := streamEvents(ctx, d.Client, "")
	defer evs.stop()
	for i, svc := range svcs {
		run := i + 1
		if err := d.WaitSettled(ctx, 2*time.Minute); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		door := fmt.Sprintf("http://127.0.0.1:%d/", svc.Port)
		load := StartLoad(ctx, door, 150)
		time.Sleep(time.Second)
		rec, detail, err := e.healKilnOnce(ctx, d, svc, door, evs)
		time.Sleep(time.Second)
		counts := load.Stop()
		if err != nil {
			r.Failf("kiln run %d: %v", run, err)
			continue
		}
		r.Add("kiln", "replacement in rotation", "s", rec.Seconds())
		for k, v := range detail {
			r.Add("kiln", k, "s", v.Seconds())
		}
		r.Add("kiln", "failed requests", "", float64(counts.Failed()))
		if counts.Failed() > 0 {
			r.Failf("kiln run %d: %d failed requests of %d (not a failed run), e.g. %v", run, counts.Failed(), counts.Sent, counts.Samples)
		}
		e.Log.Info("heal", "system", "kiln", "run", run, "seconds", rec.Seconds(), "failed", counts.Failed(), "sent", counts.Sent)
	}
	return nil
}

func (e *Env) healKilnOnce(ctx context.Context, d *Daemon, svc ServiceOptions, door string, evs *events) (time.Duration, map[string]time.Duration, error) {
	st, err := d.Client.Status(ctx)
	if err != nil {
		return 0, nil, err
	}
	s, _ := service(st, svc.Name)
	before := map[string]bool{}
	for _, srv := range s.Servers {
		before[srv.ID] = true
	}
	target := s.Servers[len(s.Servers)/2]
	t0 := time.Now()
	if _, err := e.Docker(ctx, "kill", target.ID); err != nil {
		return 0, nil, err
	}
	err = waitFor(ctx, time.Minute, 20*time.Millisecond, "a replacement in rotation", func() (bool, error) {
		st, err := d.Client.Status(ctx)
		if err != nil {
			return false, err
		}
		return recovered(st, svc.Name, target.ID, before), nil
	})
	if err != nil {
		return 0, nil, err
	}
	if resp, err := http.Get(door); err != nil {
		return 0, nil, err
	} else if resp.Body.Close(); resp.StatusCode/100 != 2 {
		return 0, nil, fmt.Errorf("the front door answered %d after recovery", resp.StatusCode)
	}
	rec := time.Since(t0)
	detail := map[string]time.Duration{}
	time.Sleep(200 * time.Millisecond) // the event stream is a little behind the status
	if ev, ok := evs.first("heal", t0); ok && ev.Service == svc.Name {
		detail["heal noticed"] = ev.Time.Sub(t0)
	}
	if ev, ok := evs.first("admitted", t0); ok && ev.Service == svc.Name {
		detail["replacement admitted"] = ev.Time.Sub(t0)
	}
	return rec, detail, nil
}

// recovered reports whether service runs healReplicas healthy servers in rotation,
// none of them target and at least one new.
func recovered(st api.Status, name, target string, before map[string]bool) bool {
	s, ok := service(st, name)
	if !ok || s.Healthy != healReplicas || len(s.Servers) != healReplicas {
		return false
	}
	fresh := false
	for _, srv := range s.Servers {
		if srv.ID == target || !srv.InService || srv.State != "running" {
			return false
		}
		fresh = fresh || !before[srv.ID]
	}
	return fresh
}

var publishedPort = regexp.MustCompile(`:(\d+)->8080/tcp`)

func (e *Env) healSwarm(ctx context.Context, r *Result, o Options) error {
	leave, err := e.Swarm(ctx)
	if err != nil {
		return err
	}
	defer leave()
	p, err := e.Project(ctx, "heal-swarm-img", "bench-heal-hello", ServiceOptions{Name: e.ID + "-img", Replicas: 1, Interval: "1s", Port: 1})
	if err != nil {
		return err
	}
	img, hc := e.ID+"-heal-hello:v1", e.ID+"-heal-hello-hc:v1"
	if err := p.LoadImage(ctx, "1", img); err != nil {
		return err
	}
	defer e.Docker(context.WithoutCancel(ctx), "rmi", img)
	if err := e.HealthImage(ctx, img, hc, "1s", 3); err != nil {
		return err
	}
	defer e.Docker(context.WithoutCancel(ctx), "rmi", hc)
	for _, sys := range []string{"swarm-d0", "swarm"} {
		if !o.want(sys) {
			continue
		}
		delay := "5s"
		if sys == "swarm-d0" {
			delay = "0s"
		}
		name := e.ID + "-heal-" + sys
		e.Log.Info("docker service create", "system", sys, "replicas", healReplicas, "restart_delay", delay)
		if _, err := e.Docker(ctx, "service", "create", "--name", name, "--replicas", strconv.Itoa(healReplicas),
			"--publish", "mode=host,target=8080", "--no-resolve-image", "--health-interval", "1s", "--health-timeout", "1s",
			"--health-retries", "3", "--restart-delay", delay, "--detach=false", "--quiet", hc); err != nil {
			return err
		}
		for run := 1; run <= o.Runs; run++ {
			rec, err := e.healSwarmOnce(ctx, name)
			if err != nil {
				r.Failf("%s run %d: %v", sys, run, err)
				continue
			}
			r.Add(sys, "replacement in rotation", "s", rec.Seconds())
			e.Log.Info("heal", "system", sys, "run", run, "seconds", rec.Seconds())
		}
		e.RemoveSwarmService(ctx, name)
	}
	return nil
}

// healthy lists the healthy containers of a Swarm service: ID → published port.
func (e *Env) healthy(ctx context.Context, name string) (map[string]string, error) {
	out, err := e.Docker(ctx, "ps", "--no-trunc", "--filter", "label=com.docker.swarm.service.name="+name, "--filter", "health=healthy", "--format", "{{.ID}}\t{{.Ports}}")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range splitLines(out) {
		id, ports, _ := strings.Cut(l, "\t")
		port := ""
		if p := publishedPort.FindStringSubmatch(ports); p != nil {
			port = p[1]
		}
		m[id] = port
	}
	return m, nil
}

func (e *Env) healSwarmOnce(ctx context.Context, name string) (time.Duration, error) {
	var before map[string]string
	err := waitFor(ctx, 2*time.Minute, 200*time.Millisecond, "4 healthy tasks", func() (bool, error) {
		var err error
		before, err = e.healthy(ctx, name)
		return len(before) == healReplicas, err
	})
	if err != nil {
		return 0, err
	}
	time.Sleep(2 * time.Second)
	var target string
	for id := range before {
		target = id
		break
	}
	t0 := time.Now()
	if _, err := e.Docker(ctx, "kill", target); err != nil {
		return 0, err
	}
	err = waitFor(ctx, time.Minute, 10*time.Millisecond, "a healthy replacement task", func() (bool, error) {
		now, err := e.healthy(ctx, name)
		if err != nil || len(now) != healReplicas {
			return false, err
		}
		if _, ok := now[target]; ok {
			return false, nil
		}
		for id, port := range now {
			if _, old := before[id]; old {
				continue
			}
			resp, err := http.Get("http://127.0.0.1:" + port + "/")
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode/100 == 2, nil
		}
		return false, nil
	})
	return time.Since(t0), err
}
