package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/store"
)

// doorRig runs real door servers behind a control socket, as the door container would,
// counting the starts and removals a hostedDoor asks for.
type doorRig struct {
	t       *testing.T
	socket  string
	starts  atomic.Int32
	removes atomic.Int32
	stop    context.CancelFunc
	srv     *door.Server
}

func (r *doorRig) start(ctx context.Context) (*door.Client, error) {
	r.starts.Add(1)
	s := door.New(door.Options{})
	cctx, cancel := context.WithCancel(context.Background())
	go door.ServeControl(cctx, r.socket, door.Control(s, "test", time.Now(), nil))
	r.srv, r.stop = s, cancel
	c := door.Dial(r.socket)
	for i := 0; ; i++ {
		if _, err := c.Status(ctx); err == nil || i == 100 {
			return c, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *doorRig) remove(context.Context) error {
	r.removes.Add(1)
	r.stop()
	r.srv.Shutdown()
	r.srv = nil
	return nil
}

func service(t *testing.T, name string) door.Service {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return door.Service{Name: name, Listen: addr, Upstreams: []string{"127.0.0.1:1"}}
}

// The door goes once no service has one, comes back with the next, and a
// configuration overtaken by the removal does not bring it back.
func TestHostedDoorRemovedWhenEmpty(t *testing.T) {
	ctx := t.Context()
	r := &doorRig{t: t, socket: filepath.Join(t.TempDir(), "door.sock")}
	h := &hostedDoor{start: r.start, remove: r.remove}
	t.Cleanup(func() {
		if r.srv != nil {
			r.remove(ctx)
		}
	})
	web := service(t, "web")
	if err := h.Apply(ctx, door.Config{Generation: 1, Services: []door.Service{web}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Apply(ctx, door.Config{Generation: 3}); err != nil {
		t.Fatal(err)
	}
	if r.starts.Load() != 1 || r.removes.Load() != 1 || h.c != nil {
		t.Fatalf("after the empty configuration: %d starts, %d removals, client %v; want 1, 1, none", r.starts.Load(), r.removes.Load(), h.c)
	}
	// Generation 2 was sent before 3 and arrives after it: it is stale, and starts nothing.
	if err := h.Apply(ctx, door.Config{Generation: 2, Services: []door.Service{web}}); !errors.Is(err, door.ErrStale) {
		t.Errorf("an overtaken configuration: %v, want ErrStale", err)
	}
	if r.starts.Load() != 1 {
		t.Errorf("an overtaken configuration started a door")
	}
	if st, err := h.Stats(ctx); err != nil || len(st) != 0 {
		t.Errorf("stats with no door: %v, %v", st, err)
	}
	if err := h.Drain(ctx, "web", []string{"127.0.0.1:1"}); err != nil {
		t.Errorf("drain with no door: %v", err)
	}
	if err := h.Check(ctx, web.Listen); err != nil {
		t.Errorf("check of a free address with no door: %v", err)
	}
	// A service again: a door again, serving it.
	if err := h.Apply(ctx, door.Config{Generation: 4, Services: []door.Service{web}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := h.Config(ctx)
	if err != nil || r.starts.Load() != 2 || len(cfg.Services) != 1 {
		t.Errorf("after a service came back: %d starts, config %+v (%v); want 2 starts and its service", r.starts.Load(), cfg, err)
	}
	// The door process gone behind the daemon's back: started again on the next push.
	r.stop()
	r.srv.Shutdown()
	if err := h.Apply(ctx, door.Config{Generation: 5, Services: []door.Service{web}}); err != nil {
		t.Fatalf("a push to a door that is gone: %v", err)
	}
	if r.starts.Load() != 3 {
		t.Errorf("%d starts, want 3: the vanished door started again", r.starts.Load())
	}
}

// A door is wanted at start only for a service that listens somewhere.
func TestWantsDoor(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	add := func(name string, svc api.Service) {
		b, _ := json.Marshal(svc)
		r, err := st.CreateRevision(ctx, store.Revision{Service: name, Image: "sha256:" + strings.Repeat("a", 64), Spec: string(b)})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetCurrent(ctx, name, r.Number); err != nil {
			t.Fatal(err)
		}
	}
	want := func(w bool) {
		t.Helper()
		if got, err := wantsDoor(ctx, st); err != nil || got != w {
			t.Errorf("wantsDoor = %v, %v; want %v", got, err, w)
		}
	}
	want(false) // no service
	add("worker", api.Service{Name: "worker"})
	want(false) // a service without a front door
	add("web", api.Service{Name: "web", Listen: "127.0.0.1:8080"})
	want(true)
}
