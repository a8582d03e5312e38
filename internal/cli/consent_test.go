package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/server"
	"github.com/kiln-build/kiln/internal/store"
)

// TestRollbackAsTheEngineSays: kiln rollback goes where the history's RollbackTarget
// says, and the consent of a later apply names that rollback as the engine recorded it
// (api.Revision.Rollback), not as the CLI reads applied_by. The history is one where
// the newest earlier deployed revision has the current settings, so the engine goes
// further back.
func TestRollbackAsTheEngineSays(t *testing.T) {
	ctx := t.Context()
	stateDir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(stateDir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	images, err := imagestore.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	digest := bakeTiny(t, images)
	drv := simdriver.New()
	defer drv.Close()
	quiet := slog.New(slog.DiscardHandler)
	eng := engine.New(engine.Options{State: st, Images: images, Driver: drv, Project: "consent", StateDir: stateDir, Log: quiet})
	pipes := pipeline.New(pipeline.Options{Engine: eng, Metrics: eng, State: st, Images: images, Driver: drv, Project: "consent", StateDir: stateDir, Log: quiet})
	eng.SetPipelines(pipes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { eng.Start(dctx); done <- struct{}{} }()
	go func() { pipes.Start(dctx); done <- struct{}{} }()
	go func() {
		server.New(eng, pipes, server.Tokens{Admin: "admin"}, quiet).Serve(dctx, ln)
		done <- struct{}{}
	}()
	defer func() { cancel(); <-done; <-done; <-done }()
	t.Setenv("KILN_ADDR", "http://"+ln.Addr().String())
	t.Setenv("KILN_TOKEN", "admin")

	listen := freeAddr(t)
	web := func(greeting string) api.Service {
		return api.Service{Name: "web", Image: digest, ImageName: "tiny", Replicas: 1, Port: 8080, Listen: listen,
			Env:       map[string]string{"GREETING": greeting},
			Resources: api.Resources{MemoryBytes: 64 << 20, PIDs: 64},
			Health:    api.Health{HTTP: "/", Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3},
			Update:    api.Update{Strategy: "blue-green", MaxSurge: 1, ProgressDeadline: time.Minute}}
	}
	broken := web("broken")
	broken.Env["PORT"] = "none" // the server exits at once: revision 3 fails, not rolled back
	for i, svc := range []api.Service{web("zero"), web("one"), broken, web("one")} {
		res, err := eng.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test"})
		if err != nil || res.OK != (i != 2) {
			t.Fatalf("apply %d: %v %+v", i+1, err, res)
		}
	}
	hist, err := eng.History(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var targets []int64
	for _, r := range hist {
		if r.RollbackTarget {
			targets = append(targets, r.Number)
		}
	}
	if len(targets) != 1 || targets[0] != 1 {
		t.Fatalf("rollback targets %v in the history, want [1] (revision 2 has the current settings)", targets)
	}

	var stdout, stderr bytes.Buffer
	g := &globals{stateDir: stateDir, stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
	cmd := newRollbackCmd(g)
	cmd.SetArgs([]string{"web"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("kiln rollback web: %v\n%s", err, stderr.String())
	}
	hist, err = eng.History(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	cur := hist[0]
	if !cur.Current || cur.Number != 5 || cur.Rollback == nil || cur.Rollback.To != targets[0] || cur.Rollback.By != currentUser() {
		t.Fatalf("after kiln rollback, the current revision is %+v (rollback %+v); want revision 5, a rollback to %d by %s", cur, cur.Rollback, targets[0], currentUser())
	}

	// Applying revision 4's settings again would undo it: the consent names it as
	// recorded, and refuses without a terminal.
	c, err := g.client()
	if err != nil {
		t.Fatal(err)
	}
	held, err := heldRollbacks(ctx, c, []api.Service{web("one")}, nil)
	if err != nil || len(held) != 1 {
		t.Fatalf("held rollbacks: %+v, %v; want one", held, err)
	}
	if h := held[0]; h.Service != "web" || h.Current != 5 || h.To != targets[0] || h.By != currentUser() || h.Replaced != 6 || !h.At.Equal(cur.Created) {
		t.Errorf("held rollback %+v; want web at 5, a rollback to %d by %s, replaced by 6", h, targets[0], currentUser())
	}
	stderr.Reset()
	_, err = g.consent(ctx, c, []api.Service{web("one")}, nil, consentOptions{})
	if want := "service web is at revision 5, a rollback to revision 1 made by " + currentUser() + " at "; !errors.As(err, new(exitError)) || !strings.Contains(stderr.String(), want) {
		t.Errorf("consent: %v, said:\n%s\nwant it to refuse, saying %q", err, stderr.String(), want)
	}
	// The spec of the revision rolled back to changes nothing: nothing is held.
	if held, err := heldRollbacks(ctx, c, []api.Service{web("zero")}, nil); err != nil || len(held) != 0 {
		t.Errorf("held rollbacks of the rollback's own settings: %+v, %v; want none", held, err)
	}
}
