package engine

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
)

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func checkFree(t *testing.T, addr, why string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("%s: %s is still listened on: %v", why, addr, err)
		return
	}
	ln.Close()
}

// An apply that fails leaves no front door open, and the doors of the services it
// would have changed as they were.
func TestFailedApplyOpensNoDoor(t *testing.T) {
	ctx := context.Background()
	d := newSimDaemon(t)
	e, _ := d.start()
	invalid := d.service("b", 1)
	invalid.Update.Strategy = "sideways"

	a := d.service("a", 1)
	a.Listen = freeAddr(t)
	if _, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{a, invalid}, User: "test"}); err == nil {
		t.Fatal("an apply with an unknown strategy succeeded")
	}
	checkFree(t, a.Listen, "a new service of a failed apply")

	// A service that moves to another address in a failed apply stays where it was.
	if res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{a}, User: "test"}); err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
	moved := a
	moved.Listen = freeAddr(t)
	if _, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{moved, invalid}, User: "test"}); err == nil {
		t.Fatal("an apply with an unknown strategy succeeded")
	}
	checkFree(t, moved.Listen, "the new address of a failed apply")
	resp, err := http.Get("http://" + a.Listen + "/")
	if err != nil {
		t.Fatalf("the service's door after a failed apply moved it: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the service's door answers %s, want 200", resp.Status)
	}
}
