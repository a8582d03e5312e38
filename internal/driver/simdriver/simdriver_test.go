package simdriver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

func get(t *testing.T, addr, path string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// A simulated server logs each request it answers; a followed log goes on with the
// requests that come next and ends when the server is destroyed.
func TestLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := New()
	defer d.Close()
	srv, err := d.Create(ctx, driver.ServerSpec{Service: "web", Revision: 1, Port: 8080})
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
	if got, want := string(b), "GET /healthz 200\nGET / 200\n"; got != want {
		t.Errorf("Logs = %q, want %q", got, want)
	}

	f, err := d.Logs(ctx, srv.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for _, want := range []string{"GET /healthz 200", "GET / 200", "GET /next 200"} {
		if want == "GET /next 200" {
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
