package engine

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// simDaemon is the state a daemon keeps across restarts (its store, images and
// simulated servers); start runs an engine on it.
type simDaemon struct {
	t      *testing.T
	dir    string
	state  *store.Store
	images *imagestore.Store
	drv    *simdriver.Driver
	digest string // of a stored image
	log    *slog.Logger
}

func newSimDaemon(t *testing.T) *simDaemon {
	t.Helper()
	dir := t.TempDir()
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(dir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	images, err := imagestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Apply deploys only stored images: one file on scratch.
	cfg, diags := spec.Parse("kiln.hcl", []byte(`image "tiny" {
  from = "scratch"
  file "/hello.txt" { content = "hello\n" }
}`), spec.Options{Environ: []string{}, Dir: dir})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	unlock, err := images.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bake.NewBaker(images, bake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Bake(ctx, cfg.Images)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	d := &simDaemon{t: t, dir: dir, state: st, images: images, drv: simdriver.New(), digest: res[0].Digest.String(),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t.Cleanup(func() {
		d.drv.Close()
		st.Close()
	})
	return d
}

// start runs an engine until stop is called (or the test ends).
func (d *simDaemon) start() (e *Engine, stop func()) { return d.startWith(nil) }

// startWith is start with the engine's options changed by set (nil for none).
func (d *simDaemon) startWith(set func(*Options)) (e *Engine, stop func()) {
	opts := Options{State: d.state, Images: d.images, Driver: d.drv, Project: "sim", StateDir: d.dir, Log: d.log}
	if set != nil {
		set(&opts)
	}
	e = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Start(ctx); err != nil {
			d.t.Errorf("Start: %v", err)
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	d.t.Cleanup(stop)
	select { // as the daemon's clients find it: started
	case <-e.Ready():
	case <-done:
	}
	return e, stop
}

// service is a service of the stored image: replicas simulated servers on a free port.
func (d *simDaemon) service(name string, replicas int) api.Service {
	return api.Service{Name: name, Image: d.digest, ImageName: "tiny", Replicas: replicas, Port: 8080, Listen: "127.0.0.1:0",
		Resources: api.Resources{MemoryBytes: 64 << 20, PIDs: 64},
		Health:    api.Health{HTTP: "/", Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3},
		Update:    api.Update{Strategy: "blue-green", MaxSurge: 1, ProgressDeadline: time.Minute}}
}

// eventually fails the test unless cond holds within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
