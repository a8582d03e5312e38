package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/dashboard"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// BenchmarkFleetPage1000 renders the fleet page (GET /, the page handler: the
// engine's status of every service, then the template) for 20 services of 50
// simulated servers, 1,000 in all, as a signed-in session sees it. No HTTP server:
// the handler is called directly, so the figure is the page's own cost.
func BenchmarkFleetPage1000(b *testing.B) {
	eng := benchEngine(b)
	var svcs []api.Service
	for i := range 20 {
		svcs = append(svcs, api.Service{Name: fmt.Sprintf("svc-%02d", i), Image: eng.digest, ImageName: "tiny", Replicas: 50, Port: 8080,
			Listen: "127.0.0.1:0", Resources: api.Resources{MemoryBytes: 64 << 20, PIDs: 64},
			Health: api.Health{HTTP: "/", Interval: 5 * time.Second, Timeout: 2 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3},
			Update: api.Update{Strategy: "blue-green", MaxSurge: 1, ProgressDeadline: time.Minute, AutoRollback: true}})
	}
	if res, err := eng.Apply(context.Background(), api.ApplyRequest{Services: svcs, User: "bench"}); err != nil || !res.OK {
		b.Fatalf("apply: %v %+v", err, res)
	}
	d := dashboard.New(dashboard.Options{Engine: eng.Engine, AdminToken: adminToken, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := http.NewServeMux()
	for _, rt := range d.Routes() {
		mux.HandleFunc(rt.Pattern, rt.Handler)
	}
	login := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {adminToken}, "next": {"/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mux.ServeHTTP(login, req)
	cookies := login.Result().Cookies()
	if login.Code != http.StatusSeeOther || len(cookies) == 0 {
		b.Fatalf("sign in: %d, %d cookies", login.Code, len(cookies))
	}
	page := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookies[0])
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w
	}
	first := page()
	if first.Code != http.StatusOK || !strings.Contains(first.Body.String(), "<b>1000/1000</b>") {
		b.Fatalf("the fleet page: %d, without 1000/1000 servers in rotation:\n%.2000s", first.Code, first.Body.String())
	}
	b.ReportAllocs()
	for b.Loop() {
		if w := page(); w.Code != http.StatusOK {
			b.Fatalf("the fleet page: %d", w.Code)
		}
	}
	b.ReportMetric(float64(first.Body.Len()), "page-bytes")
}

// benchEngine is an engine on the simulated driver with a real SQLite store and one
// tiny baked image, started under the benchmark's lifetime.
type benchEngineT struct {
	*engine.Engine
	digest string
}

func benchEngine(b *testing.B) benchEngineT {
	b.Helper()
	dir := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(dir, "kiln.db"))
	if err != nil {
		b.Fatal(err)
	}
	images, err := imagestore.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	cfg, diags := spec.Parse("kiln.hcl", []byte(`image "tiny" {
  from = "scratch"
  file "/hello.txt" { content = "hello\n" }
}`), spec.Options{Environ: []string{}, Dir: dir})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	unlock, _ := images.Lock(ctx)
	baker, _ := bake.NewBaker(images, bake.Options{})
	res, err := baker.Bake(ctx, cfg.Images)
	unlock()
	if err != nil {
		b.Fatal(err)
	}
	drv := simdriver.New()
	eng := engine.New(engine.Options{State: st, Images: images, Driver: drv, Project: "bench", StateDir: dir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan struct{})
	go func() { eng.Start(ctx); close(done) }()
	b.Cleanup(func() {
		cancel()
		<-done
		drv.Close()
		st.Close()
	})
	return benchEngineT{Engine: eng, digest: res[0].Digest.String()}
}
