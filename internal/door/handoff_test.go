package door

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A newer door takes the listeners of the one it replaces, over the handoff socket,
// under load: no request fails, and the older stops once the newer serves.
func TestHandoffUnderLoad(t *testing.T) {
	addr := freeAddr(t)
	web := backend(t, "web")
	dir := t.TempDir()
	old := New(Options{})
	t.Cleanup(old.Shutdown)
	cfg := Config{Generation: 3, Services: []Service{{Name: "web", Listen: addr, Upstreams: []string{web}}}}
	if err := old.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := filepath.Join(dir, HandoffFile)
	created := time.Now()
	handedOff, err := ServeHandoff(ctx, sock, old, created)
	if err != nil {
		t.Fatal(err)
	}

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/")
				if err == nil && resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
					if err != nil {
						t.Logf("failed: %v", err)
					} else {
						t.Logf("failed: %s", resp.Status)
					}
				}
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	waitFor(t, func() bool { return ok.Load() > 50 })

	// An older door does not take over from a newer one.
	if _, err := TakeOver(ctx, sock, created.Add(-time.Second)); err == nil {
		t.Fatal("an older door took the listeners")
	}
	tk, err := TakeOver(ctx, sock, created.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if tk.Config.Generation != 3 || len(tk.Listeners) != 1 {
		t.Fatalf("took over %+v", tk)
	}
	next := New(Options{Inherit: tk.Listeners})
	t.Cleanup(next.Shutdown)
	if err := next.Apply(ctx, tk.Config); err != nil {
		t.Fatal(err)
	}
	// The newer door serves the handoff socket's path before the older closes its
	// listener: the older's close must leave the newer's socket file alone.
	nctx, ncancel := context.WithCancel(ctx)
	defer ncancel()
	if _, err := ServeHandoff(nctx, sock, next, created.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := tk.Done(); err != nil {
		t.Fatal(err)
	}
	<-handedOff
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the newer door's handoff socket is gone after the older closed its own: %v", err)
	}
	before := ok.Load()
	waitFor(t, func() bool { st, _ := next.Stats(ctx); return st["web"].Count > 50 && ok.Load() > before+50 })
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d requests failed (of %d) through the handoff", failed.Load(), ok.Load()+failed.Load())
	}
	if n := len(old.Listeners()); n != 0 {
		t.Errorf("the replaced door still has %d listeners", n)
	}
	t.Logf("%d requests, none failed, new connections each", ok.Load())
}
