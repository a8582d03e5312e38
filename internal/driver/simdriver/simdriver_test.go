package simdriver

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/drivertest"
)

// TestConformance runs the conformance suite on the simulated runtime, in every go
// test: no Docker engine is needed. A new driver of the runtime is the driver itself.
func TestConformance(t *testing.T) {
	d := New()
	t.Cleanup(func() { d.Close() })
	drivertest.Run(t, func(*testing.T) driver.Driver { return d }, drivertest.HelloImage(t), drivertest.Options{
		Digest:   testDigest,
		Loopback: true,
	})
}

func testDigest(b []byte) string {
	m := hmac.New(sha256.New, []byte("test key"))
	m.Write(b)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// newHello is a driver that has the hello image.
func newHello(t *testing.T) (*Driver, drivertest.Image) {
	t.Helper()
	d := New()
	t.Cleanup(func() { d.Close() })
	img := drivertest.HelloImage(t)
	if err := d.EnsureImage(t.Context(), img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	return d, img
}

func get(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + " " + string(b)
}

// A simulated server prints that it listens, then a line per request it answers; a
// followed log goes on with the requests that come next and ends when the server is
// destroyed.
func TestLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, img := newHello(t)
	srv, err := d.Create(ctx, driver.ServerSpec{Service: "web", Revision: 1, Image: img.Digest, Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	get(t, srv.Address, "/healthz")
	get(t, srv.Address, "/")
	r, err := d.Logs(ctx, srv.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " INFO listening addr=:8080 version=dev") ||
		lines[1] != "GET /healthz 200" || lines[2] != "GET / 200" {
		t.Errorf("Logs = %q, want the listening line, then GET /healthz 200 and GET / 200", b)
	}

	f, err := d.Logs(ctx, srv.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // listening
	for _, want := range []string{"GET /healthz 200", "GET / 200", "GET /next 404"} {
		if want == "GET /next 404" {
			get(t, srv.Address, "/next")
		}
		if !sc.Scan() || sc.Text() != want {
			t.Fatalf("followed log: %q (%v), want %q", sc.Text(), sc.Err(), want)
		}
	}
	if err := d.Destroy(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	if sc.Scan() {
		t.Errorf("followed log goes on after Destroy: %q", sc.Text())
	}
	if _, err := d.Logs(ctx, srv.ID, false); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Logs of a destroyed server: %v, want ErrNotFound", err)
	}
}

// The simulated server answers as examples/hello does, from its env and files.
func TestServesAsHello(t *testing.T) {
	d, img := newHello(t)
	ctx := t.Context()
	spec := driver.ServerSpec{Service: "web", Image: img.Digest, Port: 8080,
		Env:   map[string]string{"GREETING_FILE": "/run/g", "STATIC_DIR": "/srv"},
		Files: map[string][]byte{"/run/g": []byte("  hi there\n"), "/srv/a.txt": []byte("static a")}}
	srv, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	host := string(srv.ID)[:12]
	for path, want := range map[string]string{
		"/":             "200 OK hi there\nversion: dev\nserver: " + host + "\n",
		"/healthz":      "200 OK ok\n",
		"/static/a.txt": "200 OK static a",
		"/nothing":      "404 Not Found 404 page not found\n",
	} {
		if got := get(t, srv.Address, path); got != want {
			t.Errorf("GET %s = %q, want %q", path, got, want)
		}
	}
	resp, err := http.Post("http://"+srv.Address+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %s, want 405", resp.Status)
	}

	// A process listening on another port than the spec's is not reached.
	moved := spec
	moved.Env = map[string]string{"PORT": "9090"}
	srv, err = d.Create(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get("http://" + srv.Address + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("a server listening on 9090 answers on its published port %d: %s", spec.Port, resp.Status)
	}
}

// EXIT_AFTER makes the server exit 3 on its own, as examples/hello does: Wait returns
// it, the server is listed exited, and a die event reports it.
func TestExitAfter(t *testing.T) {
	d, img := newHello(t)
	ctx := t.Context()
	events, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := d.Create(ctx, driver.ServerSpec{Service: "web", Image: img.Digest, Port: 8080, Env: map[string]string{"EXIT_AFTER": "10ms"}})
	if err != nil {
		t.Fatal(err)
	}
	x, err := d.Wait(ctx, srv.ID)
	if err != nil || x.Code != 3 {
		t.Fatalf("Wait = %v, %v; want exit code 3", x, err)
	}
	servers, _ := d.List(ctx, driver.Selector{})
	if len(servers) != 1 || servers[0].State != driver.StateExited || servers[0].Address != "" {
		t.Errorf("List = %+v, want one exited server without an address", servers)
	}
	var got []string
	for ev := range events {
		got = append(got, string(ev.Type)+" "+ev.Detail)
		if ev.Type == driver.EventDie {
			break
		}
	}
	if strings.Join(got, ",") != "start ,die exit code 3" {
		t.Errorf("events = %q, want start then die with exit code 3", got)
	}
	r, _ := d.Logs(ctx, srv.ID, true) // ends: the process has
	b, _ := io.ReadAll(r)
	if !strings.Contains(string(b), "exiting, as EXIT_AFTER asks") {
		t.Errorf("logs = %q", b)
	}
}

// A driver closed ends its watchers and refuses work.
func TestClose(t *testing.T) {
	d, img := newHello(t)
	events, err := d.Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create(t.Context(), driver.ServerSpec{Service: "web", Image: img.Digest, Port: 8080}); err != nil {
		t.Fatal(err)
	}
	if err := driver.Close(d); err != nil {
		t.Fatal(err)
	}
	for range events {
	}
	if _, err := d.Create(t.Context(), driver.ServerSpec{Service: "web", Image: img.Digest, Port: 8080}); !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Create after Close: %v, want ErrUnavailable", err)
	}
	if servers, _ := d.List(t.Context(), driver.Selector{}); len(servers) != 0 {
		t.Errorf("Close left %+v", servers)
	}
}
