package door

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

// Promoting: the canary's servers move into the rotation in the same change that takes
// the old ones out; no request finds the rotation empty meanwhile.
func TestCanaryPromotedInOneChange(t *testing.T) {
	old, canary := backend(t, "old"), backend(t, "canary")
	s, addr := canaryDoor(t, old, &Canary{Upstreams: []string{canary}, Weight: 50})
	err := s.Apply(context.Background(), Config{Generation: 2, Services: []Service{
		{Name: "web", Listen: addr, Upstreams: []string{canary}, Canary: &Canary{Weight: 50}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats(context.Background())
	if in := st["web"].InRotation; len(in) != 1 || in[0] != canary {
		t.Fatalf("in rotation after the promotion: %v, want the canary's server %s", in, canary)
	}
	for range 20 {
		if side := sideOf(t, http.DefaultClient, "http://"+addr+"/", nil); side != "canary" {
			t.Fatalf("answered by %q after the promotion", side)
		}
	}
}

// What the servers did is counted, not what clients do: a request whose client went
// away, and the time a client takes to read an answer, count on no side.
func TestCanaryCountsServersOnly(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select { // a long answer: a download, a stream
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "canary done")
	}))
	t.Cleanup(slow.Close)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	stable := backend(t, "stable")
	s, addr := canaryDoor(t, stable, &Canary{Upstreams: []string{strings.TrimPrefix(slow.URL, "http://")}, Weight: 100})
	for range 3 {
		sideOf(t, http.DefaultClient, "http://"+addr+"/", nil)
	}
	st, _ := s.Stats(context.Background())
	c := st["web"].Groups[GroupCanary]
	if c.Requests != 3 || c.Errors != 0 {
		t.Fatalf("canary counted %d requests, %d errors; want 3, 0", c.Requests, c.Errors)
	}
	if p := quantileOf(c.Latency, 1); p > 0.1 {
		t.Errorf("the slowest canary request took %.3fs to its headers, want the server's time, not the 300ms of its body", p)
	}
	// A client that goes away before the answer: not the canary's error.
	s2, addr2 := canaryDoor(t, stable, &Canary{Upstreams: []string{strings.TrimPrefix(hang.URL, "http://")}, Weight: 100})
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr2+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	time.Sleep(100 * time.Millisecond) // the door sees the clients gone
	st, _ = s2.Stats(context.Background())
	if c := st["web"].Groups[GroupCanary]; c.Requests != 0 || c.Errors != 0 {
		t.Errorf("requests whose clients went away counted: %d requests, %d errors", c.Requests, c.Errors)
	}
}

// quantileOf is the upper bound (seconds) of the bucket holding the q-th of hist.
func quantileOf(hist []uint64, q float64) float64 {
	var n, seen uint64
	for _, c := range hist {
		n += c
	}
	for i, c := range hist {
		seen += c
		if float64(seen) >= q*float64(n) && seen > 0 {
			return GroupBuckets[min(i, len(GroupBuckets)-1)]
		}
	}
	return 0
}
