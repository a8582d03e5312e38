package door

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// backend is a real HTTP server that names itself and the path it was asked for.
func backend(t testing.TB, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s (host %s): %v", addr, path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRoutesByHostAndPath(t *testing.T) {
	addr := freeAddr(t)
	web, api, blog := backend(t, "web"), backend(t, "api"), backend(t, "blog")
	s := New(Options{})
	t.Cleanup(s.Shutdown)
	err := s.Apply(context.Background(), Config{Generation: 1, Services: []Service{
		{Name: "web", Listen: addr, Hosts: []string{"example.com"}, Upstreams: []string{web}},
		{Name: "api", Listen: addr, Hosts: []string{"example.com"}, Path: "/api", StripPath: true, Upstreams: []string{api}},
		{Name: "blog", Listen: addr, Hosts: []string{"*.blog.example"}, Path: "/p", Upstreams: []string{blog}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, path string
		code       int
		body       string
	}{
		{"example.com", "/", 200, "web /"},
		{"EXAMPLE.com:8080", "/x", 200, "web /x"},
		{"example.com", "/api/v1", 200, "api /v1"},
		{"example.com", "/api", 200, "api /"},
		{"example.com", "/apix", 200, "web /apix"},
		{"me.blog.example", "/p/1", 200, "blog /p/1"},
		{"a.b.blog.example", "/p/1", 404, ""},
		{"me.blog.example", "/q", 404, ""},
		{"other.com", "/", 404, ""},
	} {
		code, body := get(t, addr, c.host, c.path)
		if code != c.code || (c.body != "" && body != c.body) {
			t.Errorf("host %s path %s: %d %q, want %d %q", c.host, c.path, code, body, c.code, c.body)
		}
	}
}

func TestApplyListenFailureChangesNothing(t *testing.T) {
	addr := freeAddr(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	web := backend(t, "web")
	dir := t.TempDir()
	s := New(Options{Dir: dir})
	t.Cleanup(s.Shutdown)
	first := Config{Generation: 1, Services: []Service{{Name: "web", Listen: addr, Upstreams: []string{web}}}}
	if err := s.Apply(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	err = s.Apply(context.Background(), Config{Generation: 2, Services: []Service{
		{Name: "web", Listen: addr, Upstreams: []string{web}},
		{Name: "api", Listen: taken.Addr().String(), Upstreams: []string{web}},
	}})
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("apply on a taken address: %v", err)
	}
	if g := s.Config().Generation; g != 1 {
		t.Errorf("generation %d after a failed apply, want 1", g)
	}
	if code, _ := get(t, addr, "", "/"); code != 200 {
		t.Errorf("web answered %d after the failed apply", code)
	}
	if err := s.Apply(context.Background(), Config{Generation: 0}); err == nil {
		t.Error("an older configuration was applied")
	}
	saved, err := Load(dir)
	if err != nil || saved.Generation != 1 || len(saved.Services) != 1 {
		t.Errorf("saved %+v, %v", saved, err)
	}
}

func TestDoorTakesFailingServersOutAndFailsOpen(t *testing.T) {
	addr := freeAddr(t)
	good := backend(t, "good")
	bad := freeAddr(t) // nothing listens
	s := New(Options{})
	t.Cleanup(s.Shutdown)
	err := s.Apply(context.Background(), Config{Generation: 1, Services: []Service{{Name: "web", Listen: addr,
		Upstreams: []string{good, bad}, Health: Health{Path: "/healthz", Interval: 20 * time.Millisecond, Fall: 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		st, _ := s.Stats(context.Background())
		return len(st["web"].Down) == 1 && st["web"].Down[0] == bad
	})
	for range 20 {
		if code, body := get(t, addr, "", "/"); code != 200 || body != "good /" {
			t.Fatalf("%d %q with the failing server out of rotation", code, body)
		}
	}
	// Every server down: all stay in rotation (the checks may be what is wrong).
	s.Apply(context.Background(), Config{Generation: 2, Services: []Service{{Name: "web", Listen: addr,
		Upstreams: []string{bad}, Health: Health{Path: "/healthz", Interval: 20 * time.Millisecond, Fall: 2}}}})
	waitFor(t, func() bool {
		st, _ := s.Stats(context.Background())
		return len(st["web"].Down) == 1 && len(st["web"].InRotation) == 1
	})
}

func TestPauseHoldsAndMaintenanceAnswers(t *testing.T) {
	addr := freeAddr(t)
	web := backend(t, "web")
	s := New(Options{})
	t.Cleanup(s.Shutdown)
	cfg := Config{Generation: 1, Services: []Service{{Name: "web", Listen: addr, Upstreams: []string{web}, Paused: true}}}
	if err := s.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	waitFor(t, func() bool { st, _ := s.Stats(context.Background()); return st["web"].Count == 0 })
	select {
	case code := <-answered:
		t.Fatalf("a request was answered (%d) while paused", code)
	case <-time.After(100 * time.Millisecond):
	}
	cfg.Generation, cfg.Services[0].Paused = 2, false
	if err := s.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if code := <-answered; code != 200 {
		t.Fatalf("held request answered %d after resume", code)
	}
	cfg.Generation, cfg.Services[0].Maintenance = 3, "Back at noon."
	s.Apply(context.Background(), cfg)
	if code, body := get(t, addr, "", "/"); code != 503 || !strings.Contains(body, "Back at noon.") {
		t.Fatalf("maintenance: %d %q", code, body)
	}
	st, _ := s.Stats(context.Background())
	if st["web"].Codes["200"] != 1 || st["web"].Codes["503"] != 1 {
		t.Errorf("codes %v", st["web"].Codes)
	}
}

func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	web := backend(t, "web")
	s := New(Options{Dir: dir})
	t.Cleanup(s.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := filepath.Join(dir, SocketFile)
	go ServeControl(ctx, sock, Control(s, "test", time.Now(), nil))
	c := Dial(sock)
	defer c.Close()
	waitFor(t, func() bool { _, err := c.Status(ctx); return err == nil })
	cfg := Config{Generation: 5, Services: []Service{{Name: "web", Listen: addr, Upstreams: []string{web}}}}
	if err := c.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, addr, "", "/"); code != 200 {
		t.Fatalf("%d through a door configured over its socket", code)
	}
	got, err := c.Config(ctx)
	if err != nil || got.Generation != 5 {
		t.Fatalf("config %+v, %v", got, err)
	}
	if err := c.Apply(ctx, Config{Generation: 4}); err == nil || !strings.Contains(err.Error(), "older") {
		t.Errorf("stale apply: %v", err)
	}
	if err := c.Check(ctx, addr); err != nil {
		t.Errorf("check of the door's own address: %v", err)
	}
	cfg.Generation, cfg.Services[0].Upstreams = 6, nil
	if err := c.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "web", []string{web}); err != nil {
		t.Errorf("drain: %v", err)
	}
	st, err := c.Stats(ctx)
	if err != nil || st["web"].Codes["200"] != 1 {
		t.Errorf("stats %+v, %v", st, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Configurations pushed at once, as the registry pushes them: the newest stays, an
// older one is refused as stale, and nothing races.
func TestConcurrentApplies(t *testing.T) {
	addr := freeAddr(t)
	web := backend(t, "web")
	s := New(Options{Dir: t.TempDir()})
	t.Cleanup(s.Shutdown)
	var wg sync.WaitGroup
	for g := int64(1); g <= 20; g++ {
		wg.Go(func() {
			err := s.Apply(context.Background(), Config{Generation: g, Services: []Service{{Name: "web", Listen: addr, Upstreams: []string{web}}}})
			if err != nil && !errors.Is(err, ErrStale) {
				t.Errorf("generation %d: %v", g, err)
			}
		})
	}
	wg.Wait()
	if g := s.Config().Generation; g != 20 {
		t.Errorf("generation %d served, want 20", g)
	}
}

// A service that asks for them gets one JSON line per request in the access log;
// another gets none.
func TestAccessLog(t *testing.T) {
	addr, other := freeAddr(t), freeAddr(t)
	var buf syncBuffer
	s := New(Options{AccessLog: slog.New(slog.NewJSONHandler(&buf, nil))})
	t.Cleanup(s.Shutdown)
	err := s.Apply(context.Background(), Config{Generation: 1, Services: []Service{
		{Name: "web", Listen: addr, Upstreams: []string{backend(t, "web")}, AccessLog: true},
		{Name: "quiet", Listen: other, Upstreams: []string{backend(t, "quiet")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	get(t, addr, "shop.example", "/cart?id=7")
	get(t, other, "", "/")
	var line struct {
		Service, Method, Host, Path string
		Status                      int
		Bytes                       int64
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &line) != nil {
		t.Fatalf("access log %q", buf.String())
	}
	if line.Service != "web" || line.Method != "GET" || line.Host != "shop.example" || line.Path != "/cart?id=7" || line.Status != 200 || line.Bytes == 0 {
		t.Errorf("access log line %+v", line)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
