package harness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// rolloutRate is the load, in requests a second, sent through the front door (kiln's
	// or HAProxy's) during every rollout.
	rolloutRate = 1000
	// rolloutLead and rolloutTail are how long the load runs before the update is
	// issued and after its command returned: Swarm's old tasks serve on for a second
	// or two after `docker service update` returns.
	rolloutLead, rolloutTail = time.Second, 4 * time.Second
	// The front-door latency: pairs of latencyRun at latencyRate, on a service of
	// latencyReplicas.
	latencyRate     = 1000
	latencyRun      = 10 * time.Second
	latencyReplicas = 4
)

// rolloutSizes are the fleet sizes the rollout scenario rolls (-cases).
var rolloutSizes = []string{"4", "10"}

// rolloutSystem is one row of the rollout scenario.
type rolloutSystem struct {
	name       string
	minHealthy string // kiln's; "" for Swarm
	health     bool   // Swarm: the image has a HEALTHCHECK
}

var rolloutSystems = []rolloutSystem{
	{name: "kiln-mh0", minHealthy: "0s"},
	{name: "swarm-hc", health: true},
	{name: "kiln", minHealthy: "1s"},
	{name: "swarm"},
}

// rolloutName is a system's name in the results: the plain name for a fleet of 4 (as
// results of earlier days name it), name/N for another size.
func rolloutName(system string, n int) string {
	if n == 4 {
		return system
	}
	return system + "/" + strconv.Itoa(n)
}

// Latency series: the systems and metrics of the front-door latency table.
const (
	latencyDoor   = "kiln front door"
	latencyDirect = "one server directly"
	latencyAdded  = "added by the front door"
)

var latencyMetrics = []string{"p50 latency", "p99 latency", "p50 from schedule", "p99 from schedule", "failed requests", "requests sent"}

// Rollout rolls a service of the example from one version to the other (1 → 2 → 1
// …, so every run replaces every server), one server at a time, with kiln and with
// Docker Swarm behind HAProxy, in the same run, under the same load through the front
// door; fleets of 4 and 10 (-cases); then measures the latency kiln's front door adds
// to a request (the pseudo-system "latency").
func Rollout(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "rollout", "Rolling update: kiln vs Docker Swarm", o)
	r.Notes = []string{
		"Servers of the example (examples/hello), rolled one at a time from one version to the other (1 → 2 → 1 …); both versions are baked before the timed runs. Fleets of 4 (the systems' plain names) and 10 (`…/10`).",
		fmt.Sprintf("Load: bench/loadgen, %d requests/s open loop (a request goes at its scheduled time whatever happened to earlier ones; keep-alive, 10 s timeout), through kiln's front door or HAProxy's, from %s before the update to %s after its command returned. *failed requests*: transport errors + answers outside 2xx in that window (what failed is listed below); *p99 latency during the rollout*: from each request's send. Before each run, 1 s bursts of 200 requests until all succeed and reach every server of one version.", rolloutRate, rolloutLead, rolloutTail),
		"*rollout time*: from issuing the update to the command returning: `kiln apply` (it waits for the rollout; includes the CLI's no-op bake check), `docker service update --image … --no-resolve-image --detach=false` (it waits for convergence; its `UpdateStatus.State` must then be `completed`). Afterwards every server must run the new version (kiln: `GET /v1/status` through the API client; Swarm: `docker service ps`).",
		"*new version on all servers* and *old version last served*: the client's view, in seconds after the update was issued, from the load generator's answers (each names its version and server): when the last of the N servers of the new version answered its first request, and when the old version answered last. *last admitted*: kiln's own view, the last `admitted` event of the run on its event stream (`GET /v1/events/stream`).",
		"Where the time goes, from Docker's container events of the service during the run (`docker events`, streamed): *first new server created* (after the update was issued), *step between new servers* (between the creations of two consecutive new servers), *create → start*, *ready* (Swarm with HEALTHCHECK: start → first healthy check; kiln: the i-th new server's start → the SIGTERM of the i-th old server, which kiln sends once the new one is admitted), *old server stop* (SIGTERM → stopped), *last old server SIGTERM* (after the update was issued; compare with the rollout time); medians over the servers of the run.",
		"kiln: `update { strategy = \"rolling\", max_surge = 1, min_healthy = … }`, health check every 1s; kiln-mh0 with `min_healthy = \"0s\"` (the health gate alone), kiln with `\"1s\"`; `kiln up` deploys version 1, each run is `KILN_VAR_version=V kiln apply`.",
		"Swarm: single node, `docker service create --network NET --endpoint-mode dnsrr --no-resolve-image --update-order start-first --update-parallelism 1 --update-delay 0s --update-monitor 1s --update-failure-action rollback`, on the very image kiln baked (`kiln bake --load`, retagged); swarm-hc adds a static health-check binary and `HEALTHCHECK --interval=1s --timeout=1s --retries=1` (a derived image), which Swarm waits for. Swarm's `--update-monitor` is not the counterpart of kiln's `min_healthy`: it is only the window in which a failing new task fails the update.",
		"Swarm's front: Swarm's routing mesh (`--publish`, the service VIP) needs IPVS, which this kernel lacks, so the service runs with `--endpoint-mode dnsrr` on an attachable overlay network and HAProxy (this machine's, Debian's package, imported as an image with its libraries) runs on that network, published on 127.0.0.1: it finds the tasks through Swarm's DNS (`tasks.SERVICE`, re-resolved every 1s), health-checks them every 1s (`GET /healthz`, `fall 1 rise 1`) and retries a request that failed before an answer on another task (`retries 3`, `option redispatch`, `retry-on all-retryable-errors`). The client view of the Swarm rows includes HAProxy's reaction time.",
		fmt.Sprintf("Front-door latency: on kiln's service of %d servers (min_healthy 1s) after its rollouts, %d requests/s for %s through the front door and to one server directly (its published port), each after 200 untimed requests, the pair's order alternating; one pair a run. *p50/p99 latency* from each request's send; *from schedule* from its scheduled time (as wrk2 counts, so including the generator's own lateness, the same for both targets). *added by the front door*: front door − directly, pair by pair.", latencyReplicas, latencyRate, latencyRun),
		"The machine is shared with other engineers running tests: figures are noisy, latency percentiles during rollouts especially; compare medians of the same run.",
	}
	sizes, err := rolloutFleets(o.Cases)
	if err != nil {
		return nil, err
	}
	var rig *swarmRig
	var rigErr error // the Swarm rows' setup failed: not tried again for each row
	defer func() {
		if rig != nil {
			rig.close(context.WithoutCancel(ctx))
		}
	}()
	var measured, kilns []string
	latencyDone := false
	for _, n := range sizes {
		for _, sys := range rolloutSystems {
			if !o.want(sys.name) {
				continue
			}
			name := rolloutName(sys.name, n)
			measured = append(measured, name)
			if sys.minHealthy != "" {
				kilns = append(kilns, name)
				pairs := 0
				if sys.name == "kiln" && n == latencyReplicas && o.want("latency") {
					pairs = o.Runs
				}
				if err := e.rolloutKiln(ctx, r, sys, n, o.Runs, pairs); err != nil {
					r.Failf("%s: %v", name, err)
				}
				latencyDone = latencyDone || pairs > 0
				continue
			}
			if rig == nil && rigErr == nil {
				if rig, rigErr = e.newSwarmRig(ctx, o.want("swarm-hc")); rigErr != nil {
					rig = nil
				} else {
					r.Notes = append(r.Notes, "Swarm's front: "+rig.haproxyVersion+".")
				}
			}
			if rigErr != nil {
				r.Failf("%s: %v", name, rigErr)
				continue
			}
			if err := e.rolloutSwarm(ctx, r, o, sys, n, rig); err != nil {
				r.Failf("%s: %v", name, err)
			}
		}
	}
	if o.want("latency") && !latencyDone {
		// The kiln row of 4 was not asked for: a service of 4 only for the latency.
		if err := e.rolloutKiln(ctx, r, rolloutSystem{name: "kiln", minHealthy: "1s"}, latencyReplicas, 0, o.Runs); err != nil {
			r.Failf("latency: %v", err)
		}
	}
	for _, n := range sizes {
		if v, ok := r.AddRatio(fmt.Sprintf("kiln min_healthy 0s / Swarm with HEALTHCHECK, %d servers", n), rolloutName("kiln-mh0", n), rolloutName("swarm-hc", n), "rollout time"); ok && n == 4 {
			r.AddGoal(fmt.Sprintf("rolling update of %d with a health gate ≤ 0.3× Swarm with HEALTHCHECK", n), v, "×", 0.3, false)
		}
		if v, ok := r.AddRatio(fmt.Sprintf("kiln min_healthy 1s / Swarm without health check, %d servers", n), rolloutName("kiln", n), rolloutName("swarm", n), "rollout time"); ok {
			r.AddGoal(fmt.Sprintf("rolling update of %d with min_healthy 1s ≤ 0.6× Swarm without health check", n), v, "×", 0.6, false)
		}
	}
	var failed float64
	var any bool
	for _, s := range r.Series {
		if s.Metric == "failed requests" && slices.Contains(kilns, s.System) {
			failed += s.Summary.Sum
			any = true
		}
	}
	if any {
		r.AddGoal("0 failed requests during kiln rollouts", failed, "", 0, false)
	}
	if m, ok := r.Median(latencyAdded, "p99 latency"); ok {
		r.AddGoal(fmt.Sprintf("the front door adds < 1 ms at p99, %d requests/s", latencyRate), m, "ms", 1, true)
	}
	r.AddTable(Table{Title: fmt.Sprintf("Rolling updates under %d requests/s", rolloutRate), Systems: measured,
		Metrics: []string{"rollout time", "new version on all servers", "old version last served", "last admitted", "failed requests", "requests sent", "p99 latency during the rollout"}})
	r.AddTable(Table{Title: "Where the time goes", Note: "From Docker's container events, seconds; see the notes.", Systems: measured, Metrics: rolloutSteps})
	if _, ok := r.Median(latencyDoor, "p99 latency"); ok {
		r.AddTable(Table{Title: fmt.Sprintf("Front-door latency at %d requests/s", latencyRate), Note: fmt.Sprintf("kiln's service of %d servers; milliseconds.", latencyReplicas),
			Systems: []string{latencyDoor, latencyDirect, latencyAdded}, Metrics: latencyMetrics})
	}
	return e.finish(ctx, r), nil
}

// rolloutFleets are the fleet sizes -cases asks for: rolloutSizes by default.
func rolloutFleets(cases []string) ([]int, error) {
	if len(cases) == 0 {
		cases = rolloutSizes
	}
	var sizes []int
	for _, c := range cases {
		n, err := strconv.Atoi(c)
		if err != nil || n < 2 {
			return nil, fmt.Errorf("rollout: -cases are fleet sizes of at least 2 (default %q), not %q", strings.Join(rolloutSizes, " "), c)
		}
		if !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	return sizes, nil
}

// rolloutRun is one measured update of a fleet of n from version from to version to,
// under load through door: Docker's events of the containers labelled label are
// streamed meanwhile; update is timed; verify checks the result and returns what
// tells the new servers in Docker's events (kiln's revision label, Swarm's image).
type rolloutRun struct {
	system   string // the name in the results
	run, n   int
	from, to string
	door     string
	label    string
	kiln     bool
	update   func(ctx context.Context) error
	verify   func(ctx context.Context) (mark string, err error)
	admitted *events // kiln's event stream, nil for Swarm
}

func (e *Env) measureRollout(ctx context.Context, r *Result, x rolloutRun) {
	if err := e.settle(ctx, x.door, x.n); err != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("%s run %d: the service did not settle before the run: %v", x.system, x.run, err))
	}
	watch, err := e.watchContainers(ctx, x.label)
	if err != nil {
		r.Failf("%s run %d: %v", x.system, x.run, err)
		return
	}
	load, err := e.StartLoadgen(ctx, x.door, rolloutRate, 50)
	if err != nil {
		watch.stop()
		r.Failf("%s run %d: %v", x.system, x.run, err)
		return
	}
	time.Sleep(rolloutLead)
	t0 := time.Now()
	uctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = x.update(uctx)
	dt := time.Since(t0)
	cancel()
	var mark string
	if err == nil {
		mark, err = x.verify(ctx)
	}
	time.Sleep(rolloutTail)
	sum, lerr := load.Stop()
	evs := watch.stop()
	if err == nil {
		err = lerr
	}
	if err != nil {
		r.Failf("%s run %d (%s → %s): %v", x.system, x.run, x.from, x.to, err)
		return
	}
	r.Add(x.system, "rollout time", "s", dt.Seconds())
	cv := clientView(sum, x.from, x.to, x.n, t0)
	if !math.IsNaN(cv.NewOnAll) {
		r.Add(x.system, "new version on all servers", "s", cv.NewOnAll)
	}
	if !math.IsNaN(cv.OldLast) {
		r.Add(x.system, "old version last served", "s", cv.OldLast)
	}
	if x.admitted != nil { // the tail of the load gave the event stream time to catch up
		if last, ok := x.admitted.last("admitted", t0); ok {
			r.Add(x.system, "last admitted", "s", last.Sub(t0).Seconds())
		}
	}
	r.Add(x.system, "failed requests", "", float64(sum.Failed))
	r.Add(x.system, "requests sent", "", float64(sum.Sent))
	r.Add(x.system, "p99 latency during the rollout", "ms", sum.Service.P99)
	if sum.Failed > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s run %d (%s → %s): %s", x.system, x.run, x.from, x.to, failureNote(sum, t0)))
	}
	steps := whereTimeGoes(evs, t0, func(ev containerEvent) bool { return ev.Image == mark || ev.Revision == mark }, x.kiln)
	for _, k := range rolloutSteps {
		if v, ok := steps[k]; ok {
			r.Add(x.system, k, "s", v)
		}
	}
	e.Log.Info("rollout", "system", x.system, "run", x.run, "seconds", dt.Seconds(), "new_on_all", cv.NewOnAll, "failed", sum.Failed, "sent", sum.Sent)
}

// rolloutKiln runs runs rollouts of a kiln service of n, then measures pairs pairs of
// the front door's latency on it.
func (e *Env) rolloutKiln(ctx context.Context, r *Result, sys rolloutSystem, n, runs, pairs int) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	name := rolloutName(sys.name, n)
	svc := fmt.Sprintf("%s-%s-%d", e.ID, sys.name, n)
	p, err := e.Project(ctx, fmt.Sprintf("rollout-%s-%d", sys.name, n), "bench-hello", ServiceOptions{Name: svc, Replicas: n, Interval: "1s", MinHealthy: sys.minHealthy, Port: port})
	if err != nil {
		return err
	}
	if _, err := p.Kiln(ctx, "2", "bake"); err != nil {
		return err
	}
	e.Log.Info("kiln up", "system", name, "replicas", n)
	d, err := p.Up(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	evs := streamEvents(ctx, d.Client, svc)
	defer evs.stop()
	door := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for run := 1; run <= runs; run++ {
		from, to := strconv.Itoa(2-run%2), strconv.Itoa(run%2+1)
		e.measureRollout(ctx, r, rolloutRun{system: name, run: run, n: n, from: from, to: to, door: door, kiln: true,
			label: "dev.kiln.service=" + svc, admitted: evs,
			update: func(ctx context.Context) error {
				_, err := p.Kiln(ctx, to, "apply")
				return err
			},
			verify: func(ctx context.Context) (string, error) {
				rev, err := kilnRolled(ctx, d, svc, n)
				return strconv.FormatInt(rev, 10), err
			},
		})
	}
	if pairs > 0 {
		return e.frontDoorLatency(ctx, r, pairs, d, svc, door)
	}
	return nil
}

// kilnRolled checks that every server of svc runs the service's current revision and
// is healthy, n of them, and returns the revision.
func kilnRolled(ctx context.Context, d *Daemon, svc string, n int) (int64, error) {
	st, err := d.Client.Status(ctx)
	if err != nil {
		return 0, err
	}
	s, _ := service(st, svc)
	for _, srv := range s.Servers {
		if srv.Revision != s.Revision || !srv.InService {
			return 0, fmt.Errorf("after apply, server %s is of revision %d (current %d), in service %v", srv.Name, srv.Revision, s.Revision, srv.InService)
		}
	}
	if s.Healthy != n || len(s.Servers) != n {
		return 0, fmt.Errorf("after apply, %d of %d servers healthy (%d listed)", s.Healthy, n, len(s.Servers))
	}
	return s.Revision, nil
}

// frontDoorLatency measures pairs pairs of loads through the front door and to one
// server directly, the pair's order alternating.
func (e *Env) frontDoorLatency(ctx context.Context, r *Result, pairs int, d *Daemon, svc, door string) error {
	st, err := d.Client.Status(ctx)
	if err != nil {
		return err
	}
	s, _ := service(st, svc)
	if len(s.Servers) == 0 || !strings.HasPrefix(s.Servers[0].Address, "127.0.0.1:") {
		return fmt.Errorf("no loopback server address in the status of %s", svc)
	}
	direct := "http://" + s.Servers[0].Address + "/"
	e.Log.Info("front-door latency", "door", door, "direct", direct, "pairs", pairs)
	for run := 1; run <= pairs; run++ {
		order := []string{latencyDoor, latencyDirect}
		if run%2 == 0 {
			order = []string{latencyDirect, latencyDoor}
		}
		got := map[string]LoadSummary{}
		for _, target := range order {
			url := door
			if target == latencyDirect {
				url = direct
			}
			sum, err := e.RunLoadgen(ctx, url, latencyRate, latencyRun, 200)
			if err != nil {
				return err
			}
			got[target] = sum
			for _, m := range []struct {
				metric string
				v      float64
			}{{"p50 latency", sum.Service.P50}, {"p99 latency", sum.Service.P99}, {"p50 from schedule", sum.Latency.P50}, {"p99 from schedule", sum.Latency.P99}} {
				r.Add(target, m.metric, "ms", m.v)
			}
			r.Add(target, "failed requests", "", float64(sum.Failed))
			r.Add(target, "requests sent", "", float64(sum.Sent))
			e.Log.Info("latency", "target", target, "run", run, "p50_ms", sum.Service.P50, "p99_ms", sum.Service.P99, "failed", sum.Failed)
		}
		a, b := got[latencyDoor], got[latencyDirect]
		r.Add(latencyAdded, "p50 latency", "ms", a.Service.P50-b.Service.P50)
		r.Add(latencyAdded, "p99 latency", "ms", a.Service.P99-b.Service.P99)
		r.Add(latencyAdded, "p50 from schedule", "ms", a.Latency.P50-b.Latency.P50)
		r.Add(latencyAdded, "p99 from schedule", "ms", a.Latency.P99-b.Latency.P99)
	}
	return nil
}

// swarmRig is what every Swarm row shares: the swarm, the images of both versions
// (with and without HEALTHCHECK), the overlay network and HAProxy's image.
type swarmRig struct {
	images, hcImages [3]string // index 1 and 2: versions 1 and 2
	net              string
	haproxy          string
	haproxyVersion   string
	undo             []func(ctx context.Context)
}

func (e *Env) newSwarmRig(ctx context.Context, withHC bool) (rig *swarmRig, err error) {
	rig = &swarmRig{}
	made := rig // what to undo on an error, when rig itself is returned nil
	defer func() {
		if err != nil {
			made.close(context.WithoutCancel(ctx))
		}
	}()
	leave, err := e.Swarm(ctx)
	if err != nil {
		return nil, err
	}
	rig.undo = append(rig.undo, func(context.Context) { leave() })
	rig.haproxy = e.ID + "-haproxy:latest"
	if rig.haproxyVersion, err = e.HAProxyImage(ctx, rig.haproxy); err != nil {
		return nil, err
	}
	rig.undo = append(rig.undo, func(ctx context.Context) { e.Docker(ctx, "rmi", rig.haproxy) })
	p, err := e.Project(ctx, "rollout-swarm-img", "bench-hello", ServiceOptions{Name: e.ID + "-img", Replicas: 1, Interval: "1s", Port: 1})
	if err != nil {
		return nil, err
	}
	for v := 1; v <= 2; v++ {
		img := fmt.Sprintf("%s-hello:v%d", e.ID, v)
		if err := p.LoadImage(ctx, strconv.Itoa(v), img); err != nil {
			return nil, err
		}
		rig.images[v] = img
		rig.undo = append(rig.undo, func(ctx context.Context) { e.Docker(ctx, "rmi", img) })
		if withHC {
			hc := fmt.Sprintf("%s-hello-hc:v%d", e.ID, v)
			if err := e.HealthImage(ctx, img, hc, "1s", 1); err != nil {
				return nil, err
			}
			rig.hcImages[v] = hc
			rig.undo = append(rig.undo, func(ctx context.Context) { e.Docker(ctx, "rmi", hc) })
		}
	}
	rig.net = e.ID + "-net"
	if _, err := e.Docker(ctx, "network", "create", "-d", "overlay", "--attachable", rig.net); err != nil {
		return nil, err
	}
	rig.undo = append(rig.undo, func(ctx context.Context) {
		// The network goes once the last task left it, which Swarm does in the background.
		err := waitFor(ctx, time.Minute, 2*time.Second, "removing the network "+rig.net, func() (bool, error) {
			_, err := e.Docker(ctx, "network", "rm", rig.net)
			return err == nil, err
		})
		if err != nil {
			e.Log.Warn("removing a network", "network", rig.net, "err", err)
		}
	})
	return rig, nil
}

// close undoes what newSwarmRig did, last first.
func (rig *swarmRig) close(ctx context.Context) {
	for i := len(rig.undo) - 1; i >= 0; i-- {
		rig.undo[i](ctx)
	}
	rig.undo = nil
}

func (e *Env) rolloutSwarm(ctx context.Context, r *Result, o Options, sys rolloutSystem, n int, rig *swarmRig) error {
	imgs := rig.images
	if sys.health {
		imgs = rig.hcImages
	}
	if imgs[1] == "" {
		return errors.New("no image for this system")
	}
	name := fmt.Sprintf("%s-%s-%d", e.ID, sys.name, n)
	e.Log.Info("docker service create", "system", rolloutName(sys.name, n), "replicas", n)
	if _, err := e.Docker(ctx, "service", "create", "--name", name, "--replicas", strconv.Itoa(n), "--network", rig.net,
		"--endpoint-mode", "dnsrr", "--no-resolve-image", "--update-order", "start-first", "--update-parallelism", "1",
		"--update-delay", "0s", "--update-monitor", "1s", "--update-failure-action", "rollback", "--detach=false", "--quiet", imgs[1]); err != nil {
		e.RemoveSwarmService(ctx, name)
		return err
	}
	defer e.RemoveSwarmService(ctx, name)
	port, err := FreePort()
	if err != nil {
		return err
	}
	cfg := filepath.Join(e.Work, name+".haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(name, n)), 0o644); err != nil {
		return err
	}
	lb := name + "-lb"
	if _, err := e.Docker(ctx, "run", "-d", "--name", lb, "--network", rig.net, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port),
		"-v", cfg+":/haproxy.cfg:ro", rig.haproxy, "-db", "-f", "/haproxy.cfg"); err != nil {
		e.Docker(context.WithoutCancel(ctx), "rm", "-f", lb)
		return fmt.Errorf("starting HAProxy: %w", err)
	}
	defer e.Docker(context.WithoutCancel(ctx), "rm", "-f", lb)
	door := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := e.settle(ctx, door, n); err != nil {
		logs, _ := e.Docker(ctx, "logs", "--tail", "20", lb)
		return fmt.Errorf("HAProxy in front of %s: %w (its log: %s)", name, err, tail(logs, 600))
	}
	for run := 1; run <= o.Runs; run++ {
		v := run%2 + 1
		from, to := strconv.Itoa(2-run%2), strconv.Itoa(v)
		e.measureRollout(ctx, r, rolloutRun{system: rolloutName(sys.name, n), run: run, n: n, from: from, to: to, door: door,
			label: "com.docker.swarm.service.name=" + name,
			update: func(ctx context.Context) error {
				_, err := e.Docker(ctx, "service", "update", "--image", imgs[v], "--no-resolve-image", "--detach=false", name)
				return err
			},
			verify: func(ctx context.Context) (string, error) {
				return imgs[v], e.swarmRolled(ctx, name, imgs[v], n)
			},
		})
	}
	return nil
}

// swarmRolled checks that the update completed and the n tasks desired running run
// image.
func (e *Env) swarmRolled(ctx context.Context, name, image string, n int) error {
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
		if img, st, _ := cut(l, "|"); img == image && strings.HasPrefix(st, "Running") {
			good++
		}
	}
	if total != n || good != n {
		return fmt.Errorf("%d tasks desired running, %d of them running %s", total, good, image)
	}
	return nil
}
