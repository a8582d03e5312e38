package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// kiln apply and a pipeline resolve the same spec into the same services (image name
// and digest, settings): applied by kiln apply, then run by its pipeline at the same
// commit, the spec's services get no new revision. One service runs an image baked from
// the spec, one an image of the store by digest (named as the store names it, never
// after the service).
func TestApplyAndPipelineResolveAlike(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("TestApplyAndPipelineResolveAlike needs git")
	}
	ctx := t.Context()
	repo, stateDir := t.TempDir(), t.TempDir()
	images, err := imagestore.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	pinned := bakeTiny(t, images)

	os.MkdirAll(filepath.Join(repo, "static"), 0o755)
	os.WriteFile(filepath.Join(repo, "static", "index.html"), []byte("<p>hello</p>\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "kiln.hcl"), []byte(`
image "web" {
  from = "scratch"
  file "/hello.txt" { content = "hello\n" }
  copy "static" { to = "/srv/static" }
  env = { LOG_FORMAT = "json" }
}

service "web" {
  image    = image.web
  replicas = 1
  port     = 8080
  listen   = "`+freeAddr(t)+`"
  env      = { GREETING = "hi" }
  health {
    http     = "/"
    interval = "1s"
  }
  update { strategy = "blue-green" }
}

service "pinned" {
  image    = "`+pinned+`"
  replicas = 1
  port     = 8080
  listen   = "`+freeAddr(t)+`"
  health { http = "/" }
  update { strategy = "blue-green" }
}

pipeline "site" {
  repo     = "."
  services = ["web", "pinned"]
}
`), 0o644)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"-c", "user.name=kiln", "-c", "user.email=kiln@example.com", "commit", "-qm", "first"}} {
		if out, err := exec.Command(git, append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}

	// kiln apply's resolution.
	g := &globals{file: filepath.Join(repo, "kiln.hcl"), stateDir: stateDir, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	d, err := g.resolve(ctx, nil, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.services) != 2 || len(d.pipelines) != 1 {
		t.Fatalf("resolved %d services and %d pipelines, want 2 and 1", len(d.services), len(d.pipelines))
	}
	for _, svc := range d.services {
		if want := map[string]string{"web": "web", "pinned": "tiny"}[svc.Name]; svc.ImageName != want {
			t.Errorf("service %s runs image %q, want %q", svc.Name, svc.ImageName, want)
		}
	}

	// A daemon, as kiln serve wires it, on simulated servers.
	st, err := store.Open(ctx, filepath.Join(stateDir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	drv := simdriver.New()
	defer drv.Close()
	quiet := slog.New(slog.DiscardHandler)
	eng := engine.New(engine.Options{State: st, Images: images, Driver: drv, Project: "alike", StateDir: stateDir, Log: quiet})
	pipes := pipeline.New(pipeline.Options{Engine: eng, Metrics: eng, State: st, Images: images, Driver: drv, Project: "alike", StateDir: stateDir, Log: quiet})
	eng.SetPipelines(pipes)
	dctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { eng.Start(dctx); done <- struct{}{} }()
	go func() { pipes.Start(dctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	req := api.ApplyRequest{Services: d.services, Secrets: d.secrets, Source: d.source, Commit: d.commit, User: "test"}
	if res, err := eng.Apply(ctx, req); err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
	// Applied again with its pipeline (no change to the services), which runs the
	// commit at once.
	events, unsubscribe := eng.Subscribe()
	defer unsubscribe()
	req.Pipelines = d.pipelines
	if res, err := eng.Apply(ctx, req); err != nil || !res.OK {
		t.Fatalf("apply with the pipeline: %v %+v", err, res)
	}
	timeout := time.After(2 * time.Minute) // a bound, not a wait: the run's end is an event
	for ended := false; !ended; {
		select {
		case ev := <-events:
			ended = ev.Service == "site" && (strings.HasSuffix(ev.Message, " succeeded") || strings.Contains(ev.Message, " failed"))
		case <-timeout:
			t.Fatal("the pipeline's run did not end")
		}
	}
	runs, err := pipes.Runs(ctx, "site")
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %+v, %v", runs, err)
	}
	run, err := pipes.Run(ctx, runs[0].ID)
	if err != nil || run.State != string(store.RunSucceeded) || run.Commit != d.commit {
		t.Fatalf("run of %s (applied %s): %s %v\n%s", run.Commit, d.commit, run.State, err, stageLogs(run))
	}
	for _, want := range d.services {
		revs, err := st.Revisions(ctx, want.Name)
		if err != nil || len(revs) != 1 {
			b, _ := json.Marshal(want)
			var last string
			if len(revs) > 0 {
				last = revs[0].Spec
			}
			t.Errorf("service %s has %d revisions (%v): the pipeline resolved\n%s\nkiln apply\n%s", want.Name, len(revs), err, last, b)
		}
	}
}

// bakeTiny bakes an image "tiny" into images and returns its digest.
func bakeTiny(t *testing.T, images *imagestore.Store) string {
	t.Helper()
	cfg, diags := spec.Parse("tiny.hcl", []byte(`image "tiny" {
  from = "scratch"
  file "/tiny.txt" { content = "tiny\n" }
}`), spec.Options{Environ: []string{}, Dir: t.TempDir()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	unlock, err := images.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	b, err := bake.NewBaker(images, bake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Bake(t.Context(), cfg.Images)
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Digest.String()
}

// freeAddr is a loopback address with a port free now.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func stageLogs(r api.Run) string {
	var b strings.Builder
	for _, s := range r.Stages {
		b.WriteString(s.Name + " " + s.State + ":\n" + s.Log)
	}
	return b.String()
}
