package door

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
)

// canaryDoor serves a service whose rotation is one stable backend, with c as its
// canary, and returns the door's address.
func canaryDoor(t *testing.T, stable string, c *Canary) (*Server, string) {
	t.Helper()
	addr := freeAddr(t)
	s := New(Options{})
	t.Cleanup(s.Shutdown)
	if err := s.Apply(context.Background(), Config{Generation: 1, Services: []Service{
		{Name: "web", Listen: addr, Upstreams: []string{stable}, Canary: c},
	}}); err != nil {
		t.Fatal(err)
	}
	return s, addr
}

func sideOf(t *testing.T, c *http.Client, url string, header http.Header) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	side, _, _ := strings.Cut(string(b), " ")
	return side
}

func TestCanaryWeight(t *testing.T) {
	stable, canary := backend(t, "stable"), backend(t, "canary")
	s, addr := canaryDoor(t, stable, &Canary{Upstreams: []string{canary}, Weight: 20})
	const n = 2000
	got := 0
	for range n {
		if sideOf(t, http.DefaultClient, "http://"+addr+"/", nil) == "canary" {
			got++
		}
	}
	// 400 expected; the binomial's standard deviation is about 18.
	if got < 300 || got > 500 {
		t.Errorf("%d of %d requests went to the canary at weight 20%%, want about 400", got, n)
	}
	st, _ := s.Stats(context.Background())
	g := st["web"].Groups
	if g[GroupCanary].Requests != uint64(got) || g[GroupStable].Requests != uint64(n-got) {
		t.Errorf("counted %d canary and %d stable requests, want %d and %d", g[GroupCanary].Requests, g[GroupStable].Requests, got, n-got)
	}
	var sum uint64
	for _, c := range g[GroupCanary].Latency {
		sum += c
	}
	if sum != uint64(got) || g[GroupCanary].Errors != 0 {
		t.Errorf("canary latency histogram holds %d requests and %d errors, want %d and 0", sum, g[GroupCanary].Errors, got)
	}

	// Weight 0 sends nothing to the canary; the canary ended, nothing either.
	for _, c := range []*Canary{{Upstreams: []string{canary}}, nil} {
		if err := s.Apply(context.Background(), Config{Generation: 2, Services: []Service{{Name: "web", Listen: addr, Upstreams: []string{stable}, Canary: c}}}); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			if side := sideOf(t, http.DefaultClient, "http://"+addr+"/", nil); side != "stable" {
				t.Fatalf("canary %+v: a request went to %s", c, side)
			}
		}
	}
}

func TestCanarySticky(t *testing.T) {
	stable, canary := backend(t, "stable"), backend(t, "canary")
	t.Run("cookie", func(t *testing.T) {
		_, addr := canaryDoor(t, stable, &Canary{Upstreams: []string{canary}, Weight: 50, Sticky: StickyCookie})
		sides := map[string]int{}
		for range 40 {
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar}
			first := sideOf(t, c, "http://"+addr+"/", nil)
			sides[first]++
			for i := range 30 {
				if side := sideOf(t, c, "http://"+addr+"/", nil); side != first {
					t.Fatalf("a client with the cookie went to %s on request %d, after %s", side, i+2, first)
				}
			}
		}
		if sides["stable"] == 0 || sides["canary"] == 0 {
			t.Errorf("40 clients all went to one side at weight 50%%: %v", sides)
		}
	})
	t.Run("header", func(t *testing.T) {
		_, addr := canaryDoor(t, stable, &Canary{Upstreams: []string{canary}, Weight: 50, Sticky: "header:X-User"})
		sides := map[string]int{}
		for u := range 40 {
			h := http.Header{"X-User": {"user-" + string(rune('a'+u%26)) + string(rune('a'+u/26))}}
			first := sideOf(t, http.DefaultClient, "http://"+addr+"/", h)
			sides[first]++
			for range 10 {
				if side := sideOf(t, http.DefaultClient, "http://"+addr+"/", h); side != first {
					t.Fatalf("user %s went to %s after %s", h.Get("X-User"), side, first)
				}
			}
		}
		if sides["stable"] == 0 || sides["canary"] == 0 {
			t.Errorf("40 users all went to one side at weight 50%%: %v", sides)
		}
	})
}

// A canary that refuses connections fails no request (the stable set answers), but
// each such request counts as the canary's error.
func TestCanaryTransportErrors(t *testing.T) {
	stable := backend(t, "stable")
	dead := freeAddr(t) // nothing listens
	s, addr := canaryDoor(t, stable, &Canary{Upstreams: []string{dead}, Weight: 100})
	for range 50 {
		if side := sideOf(t, http.DefaultClient, "http://"+addr+"/", nil); side != "stable" {
			t.Fatalf("answered by %q, want stable", side)
		}
	}
	st, _ := s.Stats(context.Background())
	if c := st["web"].Groups[GroupCanary]; c.Requests != 50 || c.Errors != 50 {
		t.Errorf("canary counted %d requests, %d errors; want 50 and 50", c.Requests, c.Errors)
	}
}

func TestCanaryValidate(t *testing.T) {
	for _, c := range []Canary{{Weight: 101}, {Weight: -1}, {Weight: 5, Sticky: "ip"}, {Weight: 5, Sticky: "header:"}} {
		cfg := Config{Services: []Service{{Name: "web", Listen: "127.0.0.1:0", Canary: &c}}}
		if err := cfg.Validate(); err == nil {
			t.Errorf("canary %+v was accepted", c)
		}
	}
}
