package frontdoor

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/door"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Moving a service's door while a request through it is still in flight closes the
// old door outside the registry's lock: another service's door, and the registry, go
// on answering while it drains.
func TestMovingADoorBlocksNothingElse(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release // a long request: a WebSocket, a slow download
		io.WriteString(w, "done")
	}))
	defer upstream.Close()
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := NewRegistry(door.New(door.Options{}))
	defer reg.CloseAll()
	first, err := reg.Ensure(ctx, door.Service{Name: "web", Listen: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Update(ctx, []string{upstream.Listener.Addr().String()}, nil); err != nil {
		t.Fatal(err)
	}
	go http.Get("http://" + first.Listen() + "/")
	<-started

	moved := make(chan error, 1)
	second := freeAddr(t)
	go func() {
		_, err := reg.Ensure(ctx, door.Service{Name: "web", Listen: second}) // closes the first door: blocks on the request
		moved <- err
	}()
	// While the old door drains, the registry answers and other doors open.
	deadline := time.After(20 * time.Second)
	for reg.Get("web").Listen() != second {
		select {
		case <-deadline:
			t.Fatal("the moved door was not put in use")
		case <-time.After(time.Millisecond):
		}
	}
	other, err := reg.Ensure(ctx, door.Service{Name: "api", Listen: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.All()) != 2 || other.Listen() == "" {
		t.Fatalf("registry holds %d doors, want 2", len(reg.All()))
	}
	select {
	case err := <-moved:
		t.Fatalf("moving the door returned (%v) before the request through the old one ended", err)
	default:
	}
	release <- struct{}{}
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
}

// A pending door is not in use until accepted; accepting one on the address the
// service already has keeps the door in use and closes the pending one.
func TestPendingAndAccept(t *testing.T) {
	ctx := context.Background()
	reg := NewRegistry(door.New(door.Options{}))
	defer reg.CloseAll()
	addr := freeAddr(t)
	d, err := reg.Pending(ctx, door.Service{Name: "web", Listen: addr})
	if err != nil || d == nil {
		t.Fatalf("Pending = %v, %v", d, err)
	}
	if reg.Get("web") != nil {
		t.Fatal("a pending door is in use")
	}
	if err := reg.Accept(ctx, "web", d); err != nil {
		t.Fatal(err)
	}
	if got := reg.Get("web"); got == nil || got.Listen() != addr {
		t.Fatal("the accepted door is not in use")
	}
	if resp, err := http.Get("http://" + addr + "/"); err != nil {
		t.Fatalf("the accepted door does not answer: %v", err)
	} else {
		resp.Body.Close()
	}
	if again, err := reg.Pending(ctx, door.Service{Name: "web", Listen: addr}); again != nil || err != nil {
		t.Fatalf("Pending on the address in use = %v, %v, want nil, nil", again, err)
	}
	if _, err := reg.Pending(ctx, door.Service{Name: "other", Listen: addr}); err == nil {
		t.Fatal("a second door opened on an address in use")
	}
	if got, err := reg.Remove(ctx, "web"); got == nil || got.Listen() != addr || err != nil {
		t.Fatal("Remove did not return the door")
	}
	d.Close()
	d.Close() // idempotent
	if reg.Get("web") != nil {
		t.Fatal("a removed door is still in the registry")
	}
}

// A pause outlives the applies that configure the door again, until it is lifted.
func TestPauseOutlivesEnsure(t *testing.T) {
	ctx := context.Background()
	reg := NewRegistry(door.New(door.Options{}))
	defer reg.CloseAll()
	if err := reg.Pause(ctx, "web", true, ""); err == nil {
		t.Fatal("a service without a door was paused")
	}
	settings := door.Service{Name: "web", Listen: freeAddr(t)}
	if _, err := reg.Ensure(ctx, settings); err != nil {
		t.Fatal(err)
	}
	if err := reg.Pause(ctx, "web", true, "down for maintenance"); err != nil {
		t.Fatal(err)
	}
	settings.Health.Interval = time.Second // a new revision's settings
	d, err := reg.Ensure(ctx, settings)
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Settings(); s.Maintenance != "down for maintenance" || s.Health.Interval != time.Second {
		t.Fatalf("settings after Ensure: %+v", s)
	}
	if p, err := reg.Pending(ctx, settings); p != nil || err != nil {
		t.Fatalf("Pending for the settings in use = %v, %v", p, err)
	}
	if err := reg.Pause(ctx, "web", false, ""); err != nil {
		t.Fatal(err)
	}
	if s := reg.Get("web").Settings(); s.Paused || s.Maintenance != "" {
		t.Fatalf("settings after resume: %+v", s)
	}
}
