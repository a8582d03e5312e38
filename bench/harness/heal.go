package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	r := e.newResult(ctx, "heal", "Healing: kiln vs Docker Swarm", o)
	r.Notes = []string{
		fmt.Sprintf("`docker kill` of one of %d servers, the clock started just before it; kill *i* hits service *i* of %d services of %d servers in one `kiln up` (kiln backs a service off after 3 heals within a minute, which repeated kills of one service would measure).", healReplicas, o.Runs, healReplicas),
		"kiln *replacement in rotation*: the later of *status recovered* (polled every 20 ms through the API client, `GET /v1/status`: the killed server gone, 4 servers running, healthy and in rotation, one of them new) and *front door answered from the new server* (the door requested continuously; the example names its container in every answer), as bench/heal.sh measured it. *action returned*: the `docker kill` (or exec) command returned; *target no longer listed*: the first poll that no longer lists it; *heal noticed*, *replacement created* and *replacement admitted* are the first `heal`, `created` and `admitted` events after the kill, from the event stream (their messages, which say what triggered each heal, are listed below).",
		"kiln drift: `docker exec <server> /app/hello` (an exec into a server is drift for kiln), after the kills, on server *i* of service *i* again (2 heals per service); *exec'd server replaced*: the exec'd server gone and 4 healthy servers in rotation, one new, as for a kill. Swarm does not watch for drift.",
		"kiln *failed requests*: 150 requests/s through the service's front door, from 1 s before the kill to 1 s after recovery: transport errors + answers outside 2xx.",
		"Swarm: `docker service create --replicas 4 --publish mode=host,target=8080 --no-resolve-image --health-interval 1s --health-timeout 1s --health-retries 3 [--restart-delay 0s]` on the kiln-baked image with a static health-check binary and an exec-form HEALTHCHECK (the image has no shell); timed by bench/probe (`probe heal -system swarm -health`, polling the Docker Engine API every 20 ms, the kill included): recovered when 4 tasks run (what `docker service ps` shows), none of them the killed container, and the new task's container is `healthy` and answers `GET /` on its own published port; the other Swarm rows are when probe saw each step (the killed task no longer running, the new task, its container's start, healthy, answering). swarm keeps Swarm's default restart delay (5 s), swarm-d0 sets it to 0 s. No load: the routing mesh needs IPVS, which this kernel lacks.",
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
	var failed float64
	var any bool
	for _, s := range r.Series {
		if s.Metric == "failed requests" {
			failed, any = failed+s.Summary.Sum, true
		}
	}
	if any {
		r.AddGoal("0 failed requests through heals (kills and drift)", failed, "", 0, false)
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
	kill := func(ctx context.Context, id string) error {
		_, err := e.Docker(ctx, "kill", id)
		return err
	}
	// An exec into a server is drift (its root filesystem is read-only, so the exec
	// itself is the change); the exec'd program exits at once, its port being taken.
	exec := func(ctx context.Context, id string) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		e.Docker(ctx, "exec", id, "/app/hello")
		return nil
	}
	for _, c := range []struct {
		system, metric string
		act            func(context.Context, string) error
	}{{"kiln", "replacement in rotation", kill}, {"kiln drift", "exec'd server replaced", exec}} {
		for i, svc := range svcs {
			run := i + 1
			if err := d.WaitSettled(ctx, 2*time.Minute); err != nil {
				return err
			}
			time.Sleep(2 * time.Second)
			door := fmt.Sprintf("http://127.0.0.1:%d/", svc.Port)
			load := StartLoad(ctx, door, 150)
			time.Sleep(time.Second)
			rec, detail, why, err := e.healKilnOnce(ctx, d, svc, door, evs, c.act)
			time.Sleep(time.Second)
			counts := load.Stop()
			if err != nil {
				r.Failf("%s run %d: %v", c.system, run, err)
				continue
			}
			r.Add(c.system, c.metric, "s", rec.Seconds())
			for _, k := range healSteps {
				if v, ok := detail[k]; ok {
					r.Add(c.system, k, "s", v.Seconds())
				}
			}
			if why != "" {
				r.Notes = append(r.Notes, fmt.Sprintf("%s run %d: kiln's heal event: %q", c.system, run, why))
			}
			r.Add(c.system, "failed requests", "", float64(counts.Failed()))
			if counts.Failed() > 0 {
				r.Notes = append(r.Notes, fmt.Sprintf("%s run %d: %d failed requests of %d, e.g. %v", c.system, run, counts.Failed(), counts.Sent, counts.Samples))
			}
			e.Log.Info("heal", "system", c.system, "run", run, "seconds", rec.Seconds(), "failed", counts.Failed(), "sent", counts.Sent)
		}
	}
	return nil
}

// healSteps are the steps of a kiln heal that healKilnOnce times, in the order a
// heal goes through them.
var healSteps = []string{"action returned", "heal noticed", "target no longer listed", "replacement created",
	"replacement admitted", "status recovered", "front door answered from the new server"}

// healKilnOnce acts on one server of svc (kill, exec) and times until a replacement
// is in rotation and the front door answers from it; it returns the time, the steps
// (healSteps) and the message of the heal event.
func (e *Env) healKilnOnce(ctx context.Context, d *Daemon, svc ServiceOptions, door string, evs *events, act func(context.Context, string) error) (time.Duration, map[string]time.Duration, string, error) {
	st, err := d.Client.Status(ctx)
	if err != nil {
		return 0, nil, "", err
	}
	s, _ := service(st, svc.Name)
	before := map[string]bool{}
	for _, srv := range s.Servers {
		before[srv.ID] = true
	}
	target := s.Servers[len(s.Servers)/2]
	t0 := time.Now()
	// The front door, requested continuously: when it first answers from a server that
	// was not there before (the example names its container in every answer).
	dctx, stopDoor := context.WithCancel(ctx)
	defer stopDoor()
	doorNew := make(chan time.Duration, 1)
	go func() {
		for dctx.Err() == nil {
			if id := doorServer(dctx, door); id != "" && !shortIn(id, before) {
				doorNew <- time.Since(t0)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	if err := act(ctx, target.ID); err != nil {
		return 0, nil, "", err
	}
	detail := map[string]time.Duration{"action returned": time.Since(t0)}
	err = waitFor(ctx, time.Minute, 20*time.Millisecond, "a replacement in rotation", func() (bool, error) {
		st, err := d.Client.Status(ctx)
		if err != nil {
			return false, err
		}
		if _, ok := detail["target no longer listed"]; !ok && !listed(st, svc.Name, target.ID) {
			detail["target no longer listed"] = time.Since(t0)
		}
		return recovered(st, svc.Name, target.ID, before), nil
	})
	if err != nil {
		return 0, nil, "", err
	}
	rec := time.Since(t0)
	detail["status recovered"] = rec
	why := ""
	select {
	case dn := <-doorNew:
		detail["front door answered from the new server"] = dn
		rec = max(rec, dn)
	case <-time.After(30 * time.Second):
		return 0, nil, "", errors.New("the front door did not answer from a new server within 30 s of recovery")
	}
	time.Sleep(200 * time.Millisecond) // the event stream is a little behind the status
	if ev, ok := evs.first("heal", t0); ok && ev.Service == svc.Name {
		detail["heal noticed"] = ev.Time.Sub(t0)
		why = ev.Message
	}
	if ev, ok := evs.first("created", t0); ok && ev.Service == svc.Name {
		detail["replacement created"] = ev.Time.Sub(t0)
	}
	if ev, ok := evs.first("admitted", t0); ok && ev.Service == svc.Name {
		detail["replacement admitted"] = ev.Time.Sub(t0)
	}
	return rec, detail, why, nil
}

// doorServer asks door once and returns the server its answer names ("server: ID",
// the container's short ID), or "".
func doorServer(ctx context.Context, door string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, door, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if id, ok := strings.CutPrefix(l, "server: "); ok {
			return strings.TrimSpace(id)
		}
	}
	return ""
}

// shortIn reports whether a short container ID is the prefix of one of ids.
func shortIn(short string, ids map[string]bool) bool {
	for id := range ids {
		if strings.HasPrefix(id, short) {
			return true
		}
	}
	return false
}

// listed reports whether service lists server id.
func listed(st api.Status, name, id string) bool {
	s, _ := service(st, name)
	for _, srv := range s.Servers {
		if srv.ID == id {
			return true
		}
	}
	return false
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
	probe, err := e.Probe(ctx)
	if err != nil {
		return err
	}
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
			kv, err := e.healSwarmOnce(ctx, probe, name)
			if err != nil {
				r.Failf("%s run %d: %v", sys, run, err)
				continue
			}
			r.Add(sys, "replacement in rotation", "s", kv["recovered_ms"]/1000)
			for _, k := range []struct{ key, metric string }{
				{"detect_ms", "killed task noticed"}, {"new_task_ms", "new task"}, {"started_ms", "new container started"},
				{"healthy_ms", "new container healthy"}, {"answer_ms", "new container answered"}, {"tasks_ms", "4 tasks running"},
			} {
				if v, ok := kv[k.key]; ok {
					r.Add(sys, k.metric, "s", v/1000)
				}
			}
			e.Log.Info("heal", "system", sys, "run", run, "seconds", kv["recovered_ms"]/1000)
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

// healSwarmOnce kills one healthy task's container of a Swarm service and times,
// with bench/probe (which polls the Docker Engine API every 20 ms), until the service
// has 4 running tasks again and the new container is healthy and answers.
func (e *Env) healSwarmOnce(ctx context.Context, probe, name string) (map[string]float64, error) {
	var before map[string]string
	err := waitFor(ctx, 2*time.Minute, 200*time.Millisecond, "4 healthy tasks", func() (bool, error) {
		var err error
		before, err = e.healthy(ctx, name)
		return len(before) == healReplicas, err
	})
	if err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second)
	var target string
	for id := range before {
		target = id
		break
	}
	out, err := e.Run(ctx, e.Work, nil, probe, "heal", "-system", "swarm", "-target", target, "-action", "kill",
		"-n", strconv.Itoa(healReplicas), "-service", name, "-health", "-timeout", "60s")
	if err != nil {
		return nil, err
	}
	kv := parseKV(out)
	if _, ok := kv["recovered_ms"]; !ok {
		return nil, fmt.Errorf("bench/probe did not report a recovery: %s", tail(out, 400))
	}
	return kv, nil
}

// parseKV reads bench/probe's "key value" lines; values that are not numbers ("-")
// are left out.
func parseKV(out string) map[string]float64 {
	m := map[string]float64{}
	for _, l := range splitLines(out) {
		k, v, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			m[k] = f
		}
	}
	return m
}

// Probe builds bench/probe (a module of its own) into the scratch directory, once.
func (e *Env) Probe(ctx context.Context) (string, error) {
	bin := filepath.Join(e.Work, "bin", "probe")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if _, err := e.Run(ctx, filepath.Join(e.Root, "bench", "probe"), nil, "go", "build", "-o", bin, "."); err != nil {
		return "", fmt.Errorf("building bench/probe: %w", err)
	}
	return bin, nil
}
