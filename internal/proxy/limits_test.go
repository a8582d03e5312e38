package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestProxyForwardingHeaders: what a server learns of its client comes from the door,
// never from the client.
func TestProxyForwardingHeaders(t *testing.T) {
	seen := make(chan http.Header, 1)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	defer b.Close()
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams([]string{b.Listener.Addr().String()})
	url := serve(t, p)
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.Host = "app.example"
	for k, v := range map[string]string{
		"Forwarded": "for=6.6.6.6;proto=https", "X-Real-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.6",
		"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443",
		"X-Forwarded-Prefix": "/admin", "X-Forwarded-Ssl": "on", "True-Client-IP": "6.6.6.6", "X-Client-IP": "6.6.6.6",
	} {
		req.Header.Set(k, v)
	}
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-seen
	want := map[string]string{
		"Forwarded": `for="127.0.0.1";host="app.example";proto=http`, "X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "app.example",
		"X-Forwarded-Proto": "http", "X-Forwarded-Port": "", "X-Forwarded-Prefix": "", "X-Forwarded-Ssl": "",
		"True-Client-Ip": "", "X-Client-Ip": "",
	}
	for k, v := range want {
		if got := strings.Join(h.Values(k), ","); got != v {
			t.Errorf("the server saw %s: %q, want %q", k, got, v)
		}
	}
}

func TestProxyBodyLimit(t *testing.T) {
	b := newBackend(t, "a", nil)
	p := New("web", Options{Logger: quiet, MaxRequestBody: 1000})
	p.SetUpstreams(addrs(b))
	url := serve(t, p)
	c := newClient(t)
	post := func(body io.Reader) int {
		resp, err := c.Post(url+"/", "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(strings.NewReader(strings.Repeat("x", 1000))); code != 200 {
		t.Errorf("a body of the limit: %d", code)
	}
	if code := post(strings.NewReader(strings.Repeat("x", 1001))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a declared body over the limit: %d, want 413", code)
	}
	if n := b.served.Load(); n != 1 {
		t.Errorf("the server got %d requests, want 1: a declared body over the limit is not passed on", n)
	}
	// Chunked: found out while streaming it to the server.
	if code := post(io.MultiReader(strings.NewReader(strings.Repeat("x", 100_000)))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a chunked body over the limit: %d, want 413", code)
	}
	if s := p.Stats(); s.Failures != 0 || s.Upstreams[0].Failures != 0 {
		t.Errorf("a client's oversized body counted as a failure: %+v", s)
	}
	// The documented default is generous.
	if d := New("x", Options{}).body.Max; d != DefaultMaxRequestBody || d < 32<<20 {
		t.Errorf("default body limit %d", d)
	}
}

// TestProxySlowClients: a body that trickles in, a connection that never sends its
// headers, and one kept alive idle are all dropped.
func TestProxySlowClients(t *testing.T) {
	b := newBackend(t, "a", nil)
	p := New("web", Options{Logger: quiet, BodyGrace: 300 * time.Millisecond, BodyMinRate: 1000,
		ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	p.SetUpstreams(addrs(b))
	addr := strings.TrimPrefix(serve(t, p), "http://")

	// One byte every 100 ms of 40: 4 s if the door waited for all of it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
	go func() {
		for range 40 {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c) // until the door closes it
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a trickling body was read for %s: the door waited for all of it", took)
	}
	if b.served.Load() != 0 {
		t.Errorf("the server answered a body the door should have dropped")
	}

	closedWithin := func(what string, c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("%s: still open after 5 s: %v", what, err)
		}
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	fmt.Fprintf(silent, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the end of the headers
	closedWithin("headers never finished", silent)

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("an idle kept-alive connection: still open after 5 s: %v", err)
	}
}

func TestProxyMaxConns(t *testing.T) {
	b := newBackend(t, "a", nil)
	p := New("web", Options{Logger: quiet, MaxConns: 2})
	p.SetUpstreams(addrs(b))
	url := serve(t, p)
	addr := strings.TrimPrefix(url, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // accepted
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 500 * time.Millisecond}
	if resp, err := c.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("a third connection was served while two of two were open")
	}
	held[0].Close()
	c.Timeout = 5 * time.Second
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("once one closed: %v", err)
	}
	resp.Body.Close()
}

func TestProxyRecovers(t *testing.T) {
	var logs bytes.Buffer
	var boom atomic.Bool
	boom.Store(true)
	b := newBackend(t, "a", nil)
	p := New("web", Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Middleware: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if boom.Load() {
				panic("middleware bug")
			}
			h.ServeHTTP(w, r)
		})
	}})
	p.SetUpstreams(addrs(b))
	url := serve(t, p)
	c := newClient(t)
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(logs.String(), `"panic":"middleware bug"`) || !strings.Contains(logs.String(), `"service":"web"`) {
		t.Errorf("a panic: %d, logged:\n%s", resp.StatusCode, logs.String())
	}
	boom.Store(false)
	if _, body := get(t, c, url); !strings.HasPrefix(body, "a:") {
		t.Errorf("after a panic: %q", body)
	}
}
