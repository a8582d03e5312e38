package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	pythonReplicas    = 2
	pythonRate        = 100 // requests a second during the rollouts
	pythonStopTimeout = "10s"
	pythonLead        = time.Second
	pythonTail        = 2 * time.Second
)

// pythonSystem is one row of the python scenario.
type pythonSystem struct {
	name    string
	example string // examples/<example>
	init    string // the service's init setting; "" keeps the example's
	label   string
}

var pythonSystems = []pythonSystem{
	{name: "init", example: "python", init: "true", label: "examples/python, init = true"},
	{name: "noinit", example: "python", init: "false", label: "examples/python, init = false"},
	{name: "hello", example: "hello", label: "examples/hello (Go, handles SIGTERM)"},
}

// stoppedIn reads how long a destroyed server took to stop from the message of its
// destroyed event ("server NAME destroyed (stopped in 10.2s): replaced by revision
// 3"), if the reason is why.
func stoppedIn(message, why string) (float64, bool) {
	m := destroyedStop.FindStringSubmatch(message)
	if m == nil || m[2] != why {
		return 0, false
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		return 0, false
	}
	return d.Seconds(), true
}

var destroyedStop = regexp.MustCompile(`destroyed \(stopped in ([^)]+)\): (.*)$`)

// Python rolls the Python example (examples/python: http.server, no SIGTERM handler)
// from one version to the other, 2 servers one at a time, with init = true and with
// init = false, and the Go example (examples/hello, which stops on SIGTERM) for
// comparison, under a fixed-rate load.
func Python(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "python", "Rolling update of a Python app: init = true vs false", o)
	r.Notes = []string{
		fmt.Sprintf("Rolling update of %d servers from one version to the other (1 → 2 → 1 …; max_surge 1, min_healthy 1s, health every 500ms: the examples' settings), with `stop_timeout = %q` (kiln's default) added to each service; both versions are baked before the timed runs; `kiln up` deploys version 1, each run is `KILN_VAR_version=V kiln apply -auto-approve`.", pythonReplicas, pythonStopTimeout),
		"init: examples/python with `init = true` (a minimal init as PID 1 forwards SIGTERM); noinit: with `init = false` (Python is PID 1 and ignores SIGTERM, so each replaced server is killed after stop_timeout, and the rolling update waits for it once per server); hello: examples/hello (Go, stops on SIGTERM). The Python example is as committed: Debian's python3 from its packages step, pinned by its kiln.lock.hcl.",
		"*rollout time*: from issuing `kiln apply` to its return; afterwards both servers must run the new revision (`GET /v1/status`). *a replaced server stopped in*: from the destroyed events of the run (`server NAME destroyed (stopped in X): replaced by revision N`, the event stream), both servers of every run.",
		fmt.Sprintf("Load: bench/loadgen, %d requests/s open loop through the front door, from %s before the update to %s after kiln apply returned; *failed requests*: transport errors + answers outside 2xx.", pythonRate, pythonLead, pythonTail),
		"The machine is shared with other engineers running tests: figures are noisy; compare medians of the same run.",
	}
	var measured []string
	for _, sys := range pythonSystems {
		if !o.want(sys.name) {
			continue
		}
		measured = append(measured, sys.name)
		if err := e.pythonSystem(ctx, r, o, sys); err != nil {
			r.Failf("%s: %v", sys.name, err)
		}
	}
	r.AddRatio("init = false / init = true", "noinit", "init", "rollout time")
	r.AddRatio("examples/hello / init = true", "hello", "init", "rollout time")
	var labels []string
	for _, sys := range pythonSystems {
		if o.want(sys.name) {
			labels = append(labels, sys.name+": "+sys.label)
		}
	}
	r.AddTable(Table{Title: "Rolling update of 2 servers", Note: strings.Join(labels, "; ") + ".", Systems: measured,
		Metrics: []string{"rollout time", "a replaced server stopped in", "failed requests", "requests sent"}})
	return e.finish(ctx, r), nil
}

// pythonProject is a scratch copy of the system's example with its service renamed
// svc, stop_timeout set, its init set and its front door on port.
func (e *Env) pythonProject(ctx context.Context, sys pythonSystem, svc string, port int) (*Project, error) {
	if sys.example == "hello" {
		p, err := e.Project(ctx, "python-"+sys.name, "bench-py-hello", ServiceOptions{Name: svc, Replicas: pythonReplicas, Interval: "500ms", Port: port})
		if err != nil {
			return nil, err
		}
		return p, p.editSpec(ctx, [][2]string{{`(?m)^(service "` + regexp.QuoteMeta(svc) + `" \{)$`, "${1}\n  stop_timeout = \"" + pythonStopTimeout + "\""}})
	}
	dir, err := e.copyExample(sys.example, "python-"+sys.name)
	if err != nil {
		return nil, err
	}
	p := &Project{env: e, Dir: dir, Image: "python", Services: []ServiceOptions{{Name: svc, Replicas: pythonReplicas, Port: port}}}
	edits := [][2]string{
		{`(?m)^service "python" \{$`, fmt.Sprintf("service %q {\n  stop_timeout = %q", svc, pythonStopTimeout)},
		{`(?m)^(\s*replicas\s*=).*$`, fmt.Sprintf("${1} %d", pythonReplicas)},
		{`(?m)^(\s*listen\s*=).*$`, fmt.Sprintf(`${1} "127.0.0.1:%d"`, port)},
		{`(?m)^(\s*init\s*=).*$`, "${1} " + sys.init},
	}
	return p, p.editSpec(ctx, edits)
}

// editSpec applies edits (pattern, replacement) to the project's kiln.hcl, each of
// which must match, and checks the result with `kiln validate`.
func (p *Project) editSpec(ctx context.Context, edits [][2]string) error {
	f := filepath.Join(p.Dir, "kiln.hcl")
	b, err := os.ReadFile(f)
	if err != nil {
		return err
	}
	src := string(b)
	for _, ed := range edits {
		if src, err = edit(src, ed[0], ed[1]); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		return err
	}
	if _, err := p.Kiln(ctx, "1", "validate"); err != nil {
		return fmt.Errorf("the scratch project %s: %w", p.Dir, err)
	}
	return nil
}

func (e *Env) pythonSystem(ctx context.Context, r *Result, o Options, sys pythonSystem) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	svc := e.ID + "-py-" + sys.name
	p, err := e.pythonProject(ctx, sys, svc, port)
	if err != nil {
		return err
	}
	for _, v := range []string{"2", "1"} {
		if _, err := p.Kiln(ctx, v, "bake"); err != nil {
			return err
		}
	}
	e.Log.Info("kiln up", "system", sys.name, "replicas", pythonReplicas)
	d, err := p.Up(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	evs := streamEvents(ctx, d.Client, svc)
	defer evs.stop()
	door := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for run := 1; run <= o.Runs; run++ {
		to := strconv.Itoa(run%2 + 1)
		load, err := e.StartLoadgen(ctx, door, pythonRate, 20)
		if err != nil {
			return err
		}
		time.Sleep(pythonLead)
		t0 := time.Now()
		actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err = p.Kiln(actx, to, "apply", "-auto-approve")
		dt := time.Since(t0)
		cancel()
		var rev int64
		if err == nil {
			rev, err = kilnRolled(ctx, d, svc, pythonReplicas)
		}
		time.Sleep(pythonTail)
		sum, lerr := load.Stop()
		if err == nil {
			err = lerr
		}
		if err != nil {
			r.Failf("%s run %d: %v", sys.name, run, err)
			continue
		}
		var stops []float64
		for _, ev := range evs.since("destroyed", t0) {
			if s, ok := stoppedIn(ev.Message, "replaced by revision "+strconv.FormatInt(rev, 10)); ok {
				stops = append(stops, s)
			}
		}
		if len(stops) != pythonReplicas {
			r.Failf("%s run %d: %d servers destroyed for revision %d, want %d", sys.name, run, len(stops), rev, pythonReplicas)
			continue
		}
		r.Add(sys.name, "rollout time", "s", dt.Seconds())
		for _, s := range stops {
			r.Add(sys.name, "a replaced server stopped in", "s", s)
		}
		r.Add(sys.name, "failed requests", "", float64(sum.Failed))
		r.Add(sys.name, "requests sent", "", float64(sum.Sent))
		if sum.Failed > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%s run %d: %s", sys.name, run, failureNote(sum, t0)))
		}
		e.Log.Info("rollout", "system", sys.name, "run", run, "seconds", dt.Seconds(), "stopped_in", stops, "failed", sum.Failed, "sent", sum.Sent)
	}
	return nil
}
