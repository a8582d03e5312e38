package harness

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

const (
	pipelineName = "bench"
	// pipelineRunTimeout bounds one run, from the commit to the run's end.
	pipelineRunTimeout = 3 * time.Minute
)

// pipelineVariant is one row of the pipeline scenario.
type pipelineVariant struct {
	name       string
	replicas   int
	minHealthy string
	poll       bool // the pipeline polls every 1s; else a signed webhook announces each commit
	code       bool // each commit changes a line of main.go too, so the bake compiles
	label      string
}

var pipelineVariants = []pipelineVariant{
	{name: "example-poll", replicas: 2, minHealthy: "1s", poll: true, label: "the example (2 replicas, min_healthy 1s), poll 1s"},
	{name: "example-hook", replicas: 2, minHealthy: "1s", label: "the example (2 replicas, min_healthy 1s), webhook"},
	{name: "fast-hook", replicas: 1, minHealthy: "0s", label: "1 replica, min_healthy 0s, webhook"},
	{name: "fast-code", replicas: 1, minHealthy: "0s", code: true, label: "1 replica, min_healthy 0s, webhook, + a main.go change (go build)"},
}

// The metrics of a pipeline run, seconds after `git commit` started unless said
// otherwise; pipelineSteps computes them, in this order.
const (
	stFrontDoor   = "commit → new greeting at the front door"
	stOverhead    = "kiln overhead (total − inherent)"
	stOverheadPct = "kiln overhead, % of the total"
	stOverLoad    = "kiln overhead, the image load counted as kiln's"
	stOverLoadPct = "kiln overhead, the image load counted as kiln's, % of the total"
)

var pipelineMetrics = []string{
	stFrontDoor,
	"the `git commit` command",
	"commit → run queued (poll, watch or webhook)",
	"queued → run started",
	"bake stage (checkout, parse, bake)",
	"… of which go build (the go command, from /proc)",
	"… of which other go commands",
	"bake end → test start",
	"test: start → candidate created (image load into Docker)",
	"… of which the image load (kiln's timing)",
	"test: candidate create+start (kiln's timing of the engine calls)",
	"test: candidate create → start (container start)",
	"test: candidate start → destroy begins (health gate + checks)",
	"test: destroy begins → stage end (candidate teardown)",
	"test stage",
	"test end → deploy start",
	"deploy: start → new server created",
	"deploy: server create → start (container start)",
	"deploy: server create+start (kiln's timing of the engine calls)",
	"deploy: server start → admitted (health gate + min_healthy)",
	"deploy: admitted → front door answers with it",
	"deploy: start → first new answer",
	"deploy stage",
	"deploy: rest of the stage after the first new answer",
	"run over",
	"inherent: git commit + go build + image load + server create/start + health waits",
	stOverhead,
	stOverheadPct,
	stOverLoad,
	stOverLoadPct,
	"kiln overhead without the detection",
}

// pipelineSample is one run of a pipeline, every time in seconds after `git commit`
// started; NaN where it is not known.
type pipelineSample struct {
	Git                       float64 // the git commit command's end
	First                     float64 // the front door's first answer with the new greeting
	Queued, Started, Finished float64 // the run's
	Stages                    map[string][2]float64
	Load, CandAPI, SrvAPI     float64 // durations kiln reports: image load, candidate and server create+start
	Admitted                  float64 // the first admitted event of the service
	GoBuild, GoOther          float64 // durations of the go commands
	CandCreate, CandStart     float64 // Docker's events of the candidate
	CandKill                  float64
	SrvCreate, SrvStart       float64 // of the first new server
}

// stage returns a stage's start and end, NaN when the run has no such stage.
func (s pipelineSample) stage(name string) (float64, float64) {
	if v, ok := s.Stages[name]; ok {
		return v[0], v[1]
	}
	return math.NaN(), math.NaN()
}

// pipelineSteps computes the metrics (pipelineMetrics) of one run; those that cannot
// be computed are left out. The kiln overhead is the total less the work that is not
// kiln's own: the git commit, go build, the image load, the create and start of the
// candidate and the new server as kiln timed them, and the health waits (candidate
// start → its destroy begins, which covers the health gate and the checks; new server
// start → admitted, which covers the health gate and min_healthy). What is left is
// noticing the commit, checking out, the rest of the bake, recording the revision and
// admission.
func pipelineSteps(s pipelineSample) map[string]float64 {
	bs, be := s.stage("bake")
	ts, te := s.stage("test")
	ds, de := s.stage("deploy")
	m := map[string]float64{}
	put := func(k string, v float64) {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			m[k] = v
		}
	}
	put(stFrontDoor, s.First)
	put("the `git commit` command", s.Git)
	put("commit → run queued (poll, watch or webhook)", s.Queued)
	put("queued → run started", s.Started-s.Queued)
	put("bake stage (checkout, parse, bake)", be-bs)
	put("… of which go build (the go command, from /proc)", s.GoBuild)
	put("… of which other go commands", s.GoOther)
	put("bake end → test start", ts-be)
	put("test: start → candidate created (image load into Docker)", s.CandCreate-ts)
	put("… of which the image load (kiln's timing)", s.Load)
	put("test: candidate create+start (kiln's timing of the engine calls)", s.CandAPI)
	put("test: candidate create → start (container start)", s.CandStart-s.CandCreate)
	put("test: candidate start → destroy begins (health gate + checks)", s.CandKill-s.CandStart)
	put("test: destroy begins → stage end (candidate teardown)", te-s.CandKill)
	put("test stage", te-ts)
	put("test end → deploy start", ds-te)
	put("deploy: start → new server created", s.SrvCreate-ds)
	put("deploy: server create → start (container start)", s.SrvStart-s.SrvCreate)
	put("deploy: server create+start (kiln's timing of the engine calls)", s.SrvAPI)
	put("deploy: server start → admitted (health gate + min_healthy)", s.Admitted-s.SrvStart)
	put("deploy: admitted → front door answers with it", s.First-s.Admitted)
	put("deploy: start → first new answer", s.First-ds)
	put("deploy stage", de-ds)
	put("deploy: rest of the stage after the first new answer", de-s.First)
	put("run over", s.Finished)
	goBuild := s.GoBuild
	if math.IsNaN(goBuild) {
		goBuild = 0
	}
	withoutLoad := s.Git + goBuild + s.CandAPI + (s.CandKill - s.CandStart) + s.SrvAPI + (s.Admitted - s.SrvStart)
	inherent := withoutLoad + s.Load
	put("inherent: git commit + go build + image load + server create/start + health waits", inherent)
	put(stOverhead, s.First-inherent)
	put(stOverheadPct, (s.First-inherent)/s.First*100)
	put(stOverLoad, s.First-withoutLoad)
	put(stOverLoadPct, (s.First-withoutLoad)/s.First*100)
	put("kiln overhead without the detection", s.First-inherent-(s.Queued-s.Git))
	return m
}

var (
	loadTook      = regexp.MustCompile(`ready in the engine \(([^)]+)\)`)
	candidateTook = regexp.MustCompile(`candidate \S+ started \(([^)]+)\)`)
	createdTook   = regexp.MustCompile(` in (\S+)$`)
)

// tookIn is the duration the first submatch of re in s names, in seconds; NaN
// without one.
func tookIn(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return math.NaN()
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		return math.NaN()
	}
	return d.Seconds()
}

// webhookSignature is the X-Hub-Signature-256 header git hosts send with a webhook:
// the body's HMAC-SHA256 under the shared secret.
func webhookSignature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// greetingLine is the example's one `content = "…"` line: its greeting file, which the
// service answers with.
var greetingLine = regexp.MustCompile(`(?m)^(\s*content\s*=\s*)"[^"\n]*"$`)

// setGreeting makes the greeting of the kiln.hcl src greeting; an error unless src has
// exactly one greeting that starts with Hello (the pipeline's check looks for it).
func setGreeting(src, greeting string) (string, error) {
	all := greetingLine.FindAllStringSubmatch(src, -1)
	if len(all) != 1 || !strings.HasPrefix(strings.TrimSpace(all[0][0][len(all[0][1]):]), `"Hello`) {
		return "", errors.New(`examples/hello/kiln.hcl should have exactly one line content = "Hello…" (the greeting file): has it changed shape?`)
	}
	return greetingLine.ReplaceAllLiteralString(src, all[0][1]+strconv.Quote(greeting+"\n")), nil
}

// pipelineBlock is the pipeline of a variant's repository.
func pipelineBlock(svc, secret string, poll bool) string {
	every := "0s"
	if poll {
		every = "1s"
	}
	return fmt.Sprintf(`
pipeline %q {
  repo           = "."
  branch         = "main"
  poll           = %q
  services       = [%q]
  webhook_secret = %q

  check "greets" {
    path = "/"
    body = "Hello"
  }
}
`, pipelineName, every, svc, secret)
}

// Pipeline times continuous delivery: from `git commit` in a repository of the example
// with a pipeline block to the front door answering with the new version, stage by
// stage, and how much of it is kiln's own work, in four variants.
func Pipeline(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "pipeline", "Continuous delivery: from `git commit` to the front door", o)
	r.Notes = []string{
		"Each variant: a fresh git repository (`git init -b main`) of examples/hello with `.kiln/` in `.gitignore` and `pipeline \"bench\" { repo = \".\", branch = \"main\", poll = \"1s\" (example-poll) or \"0s\", services = [the service], webhook_secret, check \"greets\" { path = \"/\", body = \"Hello\" } }`, served by `kiln up`; the pipeline's run of the first commit is let finish before measuring. Health checks every 500ms (the example's), rolling, max_surge 1.",
		"Each run changes the greeting (the `content` of the image's /etc/hello/greeting.txt in kiln.hcl, which the service answers with; fast-code also rewrites a line of main.go kept in the binary, so Go really compiles), runs `git commit -am`, and bench/probe polls the front door every 10 ms until it answers with the new greeting; then the harness waits for the run to finish. The clock starts as `git commit` starts.",
		"Triggers: example-poll relies on the pipeline noticing the commit (its 1 s poll, or its watch of the local repository's refs); the other variants POST the signed webhook (`X-Hub-Signature-256`, as git hosts send it) right after the commit.",
		"Sources: the run and its stages (`GET /v1/runs/ID`, what `kiln pipeline show` prints); kiln's event stream (the service's first `admitted` event, the new server's `created` event with kiln's timing of its create and start); the test stage's log (\"image … ready in the engine (…)\", \"candidate … started (…)\": kiln's timings of the image load and the candidate's create and start); Docker's container events of the project (candidate and new server: create, start, kill); the go commands the daemon ran, seen in /proc (processes named `go` under the `kiln up` process, polled every 10 ms: kiln runs `go` from its toolchain's directory, in a sandbox for a pipeline's commits).",
		"*kiln overhead* = total − inherent, inherent = the `git commit` command + go build + the image load + the candidate's and the new server's create and start (kiln's timings) + the health waits (candidate start → its destroy begins, which covers the health gate and the checks; new server start → admitted, which covers the health gate and `min_healthy`). What is left is kiln's own: noticing the commit, the checkout and the rest of the bake, recording the revision, admission. The intervals come from three clocks' worth of sources and overlap by a few tens of ms: the overhead is accurate to about ±0.05 s. *the image load counted as kiln's* leaves the image load out of the inherent work; *without the detection* leaves the commit → queued delay out too. Medians of the per-run values.",
		"The 500 ms health interval quantizes the health waits (a probe right after start usually fails, and the next comes an interval later); the candidate and the new server both pay it. Only loopback addresses are used; the webhook goes to kiln's API address.",
		"The machine is shared with other engineers running tests: figures are noisy; compare medians of the same run.",
	}
	viaCLI := false
	for _, c := range o.Cases {
		switch c {
		case "webhook":
		case "cli":
			viaCLI = true
		default:
			return nil, fmt.Errorf("pipeline: -cases names how a commit is announced, webhook (the default) or cli (`kiln pipeline trigger`), not %q", c)
		}
	}
	if viaCLI {
		r.Notes = append(r.Notes, "This run announced each commit with `kiln pipeline trigger bench --commit SHA` instead of the webhook (`-cases cli`).")
	}
	var measured []string
	for _, v := range pipelineVariants {
		if !o.want(v.name) {
			continue
		}
		measured = append(measured, v.name)
		if err := e.pipelineVariant(ctx, r, o, v, viaCLI); err != nil {
			r.Failf("%s: %v", v.name, err)
		}
	}
	for _, v := range measured {
		if m, ok := r.Median(v, stFrontDoor); ok {
			r.AddGoal("commit → front door < 10 s, "+v, m, "s", 10, true)
		}
		if m, ok := r.Median(v, stOverheadPct); ok {
			r.AddGoal("kiln overhead < 10% of it, "+v, m, "%", 10, true)
		}
		if m, ok := r.Median(v, stOverLoadPct); ok {
			r.AddGoal("… with the image load counted as overhead, "+v, m, "%", 10, true)
		}
	}
	var labels []string
	for _, v := range pipelineVariants {
		if o.want(v.name) {
			labels = append(labels, fmt.Sprintf("%s: %s", v.name, v.label))
		}
	}
	r.AddTable(Table{Title: "Where the time goes", Note: "Seconds after `git commit` started, or durations; variants: " + strings.Join(labels, "; ") + ".",
		Corner: "step", Systems: measured, Metrics: pipelineMetrics, ByMetric: true})
	return e.finish(ctx, r), nil
}

func (e *Env) pipelineVariant(ctx context.Context, r *Result, o Options, v pipelineVariant, viaCLI bool) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	svc := e.ID + "-" + v.name
	p, err := e.Project(ctx, "pipeline-"+v.name, "bench-pipe-hello", ServiceOptions{Name: svc, Replicas: v.replicas, Interval: "500ms", MinHealthy: v.minHealthy, Port: port})
	if err != nil {
		return err
	}
	secret := e.ID + "-" + rand.Text()
	spec := filepath.Join(p.Dir, "kiln.hcl")
	b, err := os.ReadFile(spec)
	if err != nil {
		return err
	}
	src, err := setGreeting(string(b), "Hello from kiln!")
	if err != nil {
		return err
	}
	if err := os.WriteFile(spec, []byte(src+pipelineBlock(svc, secret, v.poll)), 0o644); err != nil {
		return err
	}
	if err := appendMarker(p.Dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.Dir, ".gitignore"), []byte(".kiln/\n"), 0o644); err != nil {
		return err
	}
	if _, err := p.Kiln(ctx, "1", "validate"); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-qm", "bench: the example"}} {
		if _, err := e.git(ctx, p.Dir, args...); err != nil {
			return err
		}
	}
	e.Log.Info("kiln up", "variant", v.name, "replicas", v.replicas)
	d, err := p.Up(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	project, err := os.ReadFile(filepath.Join(p.Dir, ".kiln", "project"))
	if err != nil {
		return fmt.Errorf("reading the project's name: %w", err)
	}
	// The pipeline's first poll runs the initial commit: let it finish. Without a poll
	// there may be none.
	start := time.Now()
	err = waitFor(ctx, 2*time.Minute, 200*time.Millisecond, "the pipeline's first run to finish", func() (bool, error) {
		runs, err := d.Client.Runs(ctx, pipelineName)
		if err != nil {
			return false, err
		}
		if len(runs) == 0 {
			return !v.poll && time.Since(start) > 10*time.Second, nil
		}
		for _, run := range runs {
			if run.State == "queued" || run.State == "running" {
				return false, fmt.Errorf("run %d is %s", run.ID, run.State)
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	evs := streamEvents(ctx, d.Client, svc)
	defer evs.stop()
	gos := watchProcs(ctx, d.PID(), "go", 10*time.Millisecond)
	defer gos.stop()
	time.Sleep(time.Second)
	for run := 1; run <= o.Runs; run++ {
		s, id, err := e.pipelineRun(ctx, d, p, v, viaCLI, run, strings.TrimSpace(string(project)), secret, port, evs, gos)
		if err != nil {
			r.Failf("%s run %d: %v", v.name, run, err)
			continue
		}
		steps := pipelineSteps(s)
		for _, k := range pipelineMetrics {
			if x, ok := steps[k]; ok {
				unit := "s"
				if strings.HasSuffix(k, "% of the total") {
					unit = "%"
				}
				r.Add(v.name, k, unit, x)
			}
		}
		e.Log.Info("pipeline", "variant", v.name, "run", run, "run_id", id, "front_door_seconds", s.First, "overhead_seconds", steps[stOverhead])
		time.Sleep(time.Second)
	}
	return nil
}

// pipelineRun commits a new greeting and times it to the front door and to the end of
// its run.
func (e *Env) pipelineRun(ctx context.Context, d *Daemon, p *Project, v pipelineVariant, viaCLI bool, run int, project, secret string, port int, evs *events, gos *procWatch) (pipelineSample, int64, error) {
	greeting := fmt.Sprintf("Hello from bench run %d of %s (%s)", run, v.name, rand.Text()[:8])
	spec := filepath.Join(p.Dir, "kiln.hcl")
	b, err := os.ReadFile(spec)
	if err != nil {
		return pipelineSample{}, 0, err
	}
	src, err := setGreeting(string(b), greeting)
	if err == nil {
		err = os.WriteFile(spec, []byte(src), 0o644)
	}
	if err == nil && v.code {
		err = editMarker(p.Dir, int(time.Now().UnixNano()%1e9))
	}
	if err != nil {
		return pipelineSample{}, 0, err
	}
	probe, err := e.Probe(ctx)
	if err != nil {
		return pipelineSample{}, 0, err
	}
	watch, err := e.watchContainers(ctx, "dev.kiln.project="+project)
	if err != nil {
		return pipelineSample{}, 0, err
	}
	defer watch.stop()
	doorOut := make(chan string, 1)
	doorErr := make(chan error, 1)
	go func() {
		out, err := e.Run(ctx, e.Work, nil, probe, "door", "-url", fmt.Sprintf("http://127.0.0.1:%d/", port), "-want", greeting,
			"-timeout", pipelineRunTimeout.String())
		doorOut <- out
		doorErr <- err
	}()
	time.Sleep(200 * time.Millisecond) // the poller is up before the commit; it reports absolute times anyway
	t0 := time.Now()
	if _, err := e.git(ctx, p.Dir, "commit", "-qam", fmt.Sprintf("bench: run %d of %s", run, v.name)); err != nil {
		return pipelineSample{}, 0, err
	}
	s := pipelineSample{Git: time.Since(t0).Seconds()}
	sha, err := e.git(ctx, p.Dir, "rev-parse", "HEAD")
	if err != nil {
		return pipelineSample{}, 0, err
	}
	sha = strings.TrimSpace(sha)
	switch {
	case v.poll:
	case viaCLI:
		if _, err := p.Kiln(ctx, "1", "pipeline", "trigger", pipelineName, "--commit", sha); err != nil {
			return pipelineSample{}, 0, err
		}
	default:
		body := []byte(fmt.Sprintf(`{"ref": "refs/heads/main", "after": %q}`, sha))
		h := http.Header{"Content-Type": {"application/json"}, "X-Hub-Signature-256": {webhookSignature(secret, body)}}
		if _, err := d.request(ctx, http.MethodPost, "/v1/pipelines/"+pipelineName+"/webhook", h, body); err != nil {
			return pipelineSample{}, 0, fmt.Errorf("the webhook: %w", err)
		}
	}
	out, err := <-doorOut, <-doorErr
	if err != nil {
		return pipelineSample{}, 0, fmt.Errorf("the front door: %w", err)
	}
	kv := parseKV(out)
	first, ok := kv["first_ns"]
	if !ok {
		return pipelineSample{}, 0, fmt.Errorf("bench/probe saw no answer with the new greeting: %s", tail(out, 300))
	}
	s.First = time.Unix(0, int64(first)).Sub(t0).Seconds()
	// The run goes on after the first new answer (the rollout, the old servers).
	var got api.Run
	err = waitFor(ctx, pipelineRunTimeout, 200*time.Millisecond, "the run of "+sha[:12]+" to end", func() (bool, error) {
		runs, err := d.Client.Runs(ctx, pipelineName)
		if err != nil {
			return false, err
		}
		for _, r := range runs {
			if r.Commit == sha {
				got = r
				return r.State != "queued" && r.State != "running", nil
			}
		}
		return false, errors.New("no run of the commit yet")
	})
	if err != nil {
		return pipelineSample{}, 0, err
	}
	tOver := time.Now()
	time.Sleep(time.Second) // the event streams are a little behind
	if got, err = d.Client.Run(ctx, got.ID); err != nil {
		return pipelineSample{}, 0, err
	}
	if got.State != "succeeded" {
		return pipelineSample{}, got.ID, fmt.Errorf("run %d %s: %s", got.ID, got.State, got.Detail)
	}
	rel := func(t time.Time) float64 {
		if t.IsZero() {
			return math.NaN()
		}
		return t.Sub(t0).Seconds()
	}
	s.Queued, s.Started, s.Finished = rel(got.Created), rel(got.Started), rel(got.Finished)
	s.Stages = map[string][2]float64{}
	s.Load, s.CandAPI = math.NaN(), math.NaN()
	for _, st := range got.Stages {
		s.Stages[st.Name] = [2]float64{rel(st.Started), rel(st.Finished)}
		if st.Name == "test" {
			s.Load, s.CandAPI = tookIn(loadTook, st.Log), tookIn(candidateTook, st.Log)
		}
	}
	s.Admitted, s.SrvAPI = math.NaN(), math.NaN()
	if ev, ok := evs.first("admitted", t0); ok {
		s.Admitted = rel(ev.Time)
	}
	if ev, ok := evs.first("created", t0); ok {
		s.SrvAPI = tookIn(createdTook, ev.Message)
	}
	for _, sp := range gos.between(t0, tOver) {
		if len(sp.Args) > 1 && sp.Args[1] == "build" {
			s.GoBuild += sp.Seconds()
		} else {
			s.GoOther += sp.Seconds()
		}
	}
	s.CandCreate, s.CandStart, s.CandKill, s.SrvCreate, s.SrvStart = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
	pipelineContainers(&s, watch.stop(), d.Project.Services[0].Name, t0)
	return s, got.ID, nil
}

// pipelineContainers reads, from Docker's events of the project, when the candidate
// (of service svc-candidate) was created, started and killed, and when the first new
// server of svc was created and started.
func pipelineContainers(s *pipelineSample, evs []containerEvent, svc string, t0 time.Time) {
	firstOf := func(v *float64, t time.Time) {
		if math.IsNaN(*v) {
			*v = t.Sub(t0).Seconds()
		}
	}
	var server string
	for _, ev := range evs {
		if ev.Time.Before(t0) {
			continue
		}
		switch {
		case ev.Service == svc+"-candidate" && ev.Action == "create":
			firstOf(&s.CandCreate, ev.Time)
		case ev.Service == svc+"-candidate" && ev.Action == "start":
			firstOf(&s.CandStart, ev.Time)
		case ev.Service == svc+"-candidate" && strings.HasPrefix(ev.Action, "kill"):
			firstOf(&s.CandKill, ev.Time)
		case ev.Service == svc && ev.Action == "create" && server == "":
			server = ev.Name
			firstOf(&s.SrvCreate, ev.Time)
		case ev.Service == svc && ev.Action == "start" && ev.Name == server:
			firstOf(&s.SrvStart, ev.Time)
		}
	}
}

// git runs git in dir as the benchmark's own author, whatever git is configured with.
func (e *Env) git(ctx context.Context, dir string, args ...string) (string, error) {
	return e.Run(ctx, dir, []string{"GIT_AUTHOR_NAME=kiln-bench", "GIT_AUTHOR_EMAIL=bench@kiln.invalid",
		"GIT_COMMITTER_NAME=kiln-bench", "GIT_COMMITTER_EMAIL=bench@kiln.invalid", "GIT_CONFIG_NOSYSTEM=1"}, "git", args...)
}
