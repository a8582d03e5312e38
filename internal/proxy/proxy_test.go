package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// quiet is the logger of proxies under test: retries are expected and not worth a line.
var quiet = slog.New(slog.DiscardHandler)

// backend is an upstream server for tests: it answers its name, echoes a POST body,
// and counts the requests it served.
type backend struct {
	*httptest.Server
	name   string
	served atomic.Int64
	delay  func() time.Duration // before answering; none if nil
}

func newBackend(t testing.TB, name string, delay func() time.Duration) *backend {
	t.Helper()
	b := &backend{name: name, delay: delay}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.delay != nil {
			time.Sleep(b.delay())
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.served.Add(1)
		w.Header().Set("X-Backend", b.name)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Fwd-Host", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Seen-Forwarded", r.Header.Get("Forwarded"))
		fmt.Fprintf(w, "%s:%s", b.name, body)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

// kill closes the server's listener and every connection to it, without waiting for
// requests in flight: a server that crashed.
func (b *backend) kill() {
	b.Listener.Close()
	b.CloseClientConnections()
}

func addrs(bs ...*backend) []string {
	var a []string
	for _, b := range bs {
		a = append(a, b.addr())
	}
	return a
}

// serve starts p on a loopback listener until the test ends and returns its URL.
func serve(t testing.TB, p *Proxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// newClient returns a client with keep-alives. Its idle connections are closed when the
// test ends, before the proxy shuts down: http.Server.Shutdown waits up to 5s for a
// connection that was opened but never used.
func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// load sends requests from n goroutines until ctx ends: GETs, and every third a POST
// whose echo is checked. It returns how many succeeded and the failures.
func load(ctx context.Context, c *http.Client, url string, n int) (ok int64, failures []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				err := request(c, url, g, i)
				if ctx.Err() != nil && err != nil {
					return // the test is over; the client gave up
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok, failures
}

func request(c *http.Client, url string, g, i int) error {
	var res *http.Response
	var err error
	body := ""
	if i%3 == 2 {
		body = fmt.Sprintf("body-%d-%d", g, i)
		res, err = c.Post(url, "text/plain", strings.NewReader(body))
	} else {
		res, err = c.Get(url)
	}
	if err != nil {
		return err
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", res.StatusCode, got)
	}
	if want := res.Header.Get("X-Backend") + ":" + body; string(got) != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

// fetch is get for other goroutines: it returns "STATUS BODY" or the error.
func fetch(c *http.Client, url string) string {
	res, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(res.StatusCode, " ", string(b))
}

func get(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestProxyBalances(t *testing.T) {
	bs := []*backend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams(addrs(bs...))
	url := serve(t, p)
	c := newClient(t)

	req, _ := http.NewRequest("GET", url+"/x?y=1", nil)
	req.Host = "example.test"
	req.Header.Set("Forwarded", `for="10.0.0.1";proto=https`) // a client's claim: replaced
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for h, want := range map[string]string{
		"X-Seen-Host": "example.test", "X-Seen-For": "127.0.0.1",
		"X-Seen-Fwd-Host": "example.test", "X-Seen-Proto": "http",
		"X-Seen-Forwarded": `for="127.0.0.1";host="example.test";proto=http`,
	} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("%s: got %q, want %q", h, got, want)
		}
	}

	const n = 300
	for range n - 1 {
		if res, body := get(t, c, url); res.StatusCode != 200 {
			t.Fatalf("status %d: %s", res.StatusCode, body)
		}
	}
	for _, b := range bs {
		if got := b.served.Load(); got < n/3/2 {
			t.Errorf("sequential: %s served %d of %d", b.name, got, n)
		}
		b.served.Store(0)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	ok, failures := load(ctx, c, url, 8)
	if len(failures) > 0 {
		t.Fatalf("%d failures, first: %s", len(failures), failures[0])
	}
	for _, b := range bs {
		if got := b.served.Load(); got < ok/3/2 {
			t.Errorf("concurrent: %s served %d of %d", b.name, got, ok)
		}
	}
	if s := p.Stats(); s.Requests < n || s.Failures != 0 || len(s.Upstreams) != 3 {
		t.Errorf("stats: %+v", s)
	}
}

// The heart of zero-downtime rollouts: swapping the set under load, and killing the old
// servers once WaitIdle says they are idle, fails no request and needs no retry.
func TestProxySwapUnderLoad(t *testing.T) {
	jitter := func() time.Duration { return time.Duration(rand.IntN(3000)) * time.Microsecond }
	gens := [][]*backend{}
	for g := range 4 {
		gens = append(gens, []*backend{newBackend(t, fmt.Sprintf("g%da", g), jitter), newBackend(t, fmt.Sprintf("g%db", g), jitter)})
	}
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams(addrs(gens[0]...))
	url := serve(t, p)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	swapped := make(chan error, 1)
	go func() {
		defer close(swapped)
		for g := 1; g < len(gens); g++ {
			time.Sleep(450 * time.Millisecond)
			p.SetUpstreams(addrs(gens[g]...))
			for _, old := range gens[g-1] {
				wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
				err := p.WaitIdle(wctx, old.addr())
				wcancel()
				if err != nil {
					swapped <- err
					return
				}
				old.kill()
			}
		}
	}()
	ok, failures := load(ctx, newClient(t), url, 8)
	if err := <-swapped; err != nil {
		t.Fatal(err)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed, first: %s", len(failures), ok+int64(len(failures)), failures[0])
	}
	for _, gen := range gens {
		for _, b := range gen {
			if b.served.Load() == 0 {
				t.Errorf("%s served nothing", b.name)
			}
		}
	}
	s := p.Stats()
	if s.Retries != 0 || s.Failures != 0 {
		t.Errorf("%d retries and %d failures: the swap is not clean", s.Retries, s.Failures)
	}
	t.Logf("%d requests, no failure; per server: %v", ok, served(gens))
}

func served(gens [][]*backend) map[string]int64 {
	m := map[string]int64{}
	for _, gen := range gens {
		for _, b := range gen {
			m[b.name] = b.served.Load()
		}
	}
	return m
}

// A server that crashes while still in rotation: GETs in flight on it and new requests
// are retried on the other server.
func TestProxyUpstreamDiesAbruptly(t *testing.T) {
	delay := func() time.Duration { return 2 * time.Millisecond }
	a, b := newBackend(t, "a", delay), newBackend(t, "b", delay)
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams(addrs(a, b))
	url := serve(t, p)
	c := newClient(t)

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok int
	var failures []string
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				res, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if err == nil && res.StatusCode != 200 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	killed := a.served.Load()
	a.kill()
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d GETs failed, first: %s", len(failures), ok+len(failures), failures[0])
	}
	if killed == 0 || p.Stats().Retries == 0 {
		t.Errorf("a served %d before it died, %d retries: the test did not test", killed, p.Stats().Retries)
	}

	// Once the server is gone, requests with a body are retried too: none was sent.
	for i := range 20 {
		if err := request(c, url, 0, 3*i+2); err != nil {
			t.Errorf("POST after the crash: %v", err)
		}
	}
}

// A request that was refused is retried with its body on up to three servers.
func TestProxyRetriesRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead1 := ln.Addr().String()
	ln.Close()
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead2 := ln.Addr().String()
	ln.Close()
	live := newBackend(t, "live", nil)

	p := New("web", Options{Logger: quiet})
	p.SetUpstreams([]string{dead1, dead2, live.addr()})
	url := serve(t, p)
	c := newClient(t)
	for i := range 30 {
		if err := request(c, url, 0, i); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	s := p.Stats()
	if s.Failures != 0 || s.Retries == 0 {
		t.Errorf("stats: %+v", s)
	}
	for _, u := range s.Upstreams {
		if u.Addr != live.addr() && u.Failures == 0 {
			t.Errorf("%s was never tried", u.Addr)
		}
	}
}

// closer is a server that reads a request and closes the connection without answering:
// the request reached it and may have taken effect.
func closer(t *testing.T) (addr string, got *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = new(atomic.Int64)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				got.Add(1)
			}()
		}
	}()
	return ln.Addr().String(), got
}

// A request that reached a server which then failed is retried only if it is
// idempotent: a POST is answered 502, never sent twice.
func TestProxyDoesNotRepeatPost(t *testing.T) {
	bad, got := closer(t)
	good := newBackend(t, "good", nil)
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams([]string{bad, good.addr()})
	url := serve(t, p)
	c := newClient(t)

	const n = 20
	var failed int64
	for i := range n {
		res, err := c.Post(url, "text/plain", strings.NewReader("charge-once"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
		case http.StatusBadGateway:
			failed++
		default:
			t.Fatalf("POST %d: status %d", i, res.StatusCode)
		}
	}
	if failed == 0 || failed != got.Load() || good.served.Load() != n-failed {
		t.Errorf("%d POSTs answered 502, %d reached the closing server, %d the good one; want 502s = closing > 0, good = %d - 502s",
			failed, got.Load(), good.served.Load(), n)
	}

	for i := range n {
		if res, body := get(t, c, url); res.StatusCode != 200 {
			t.Fatalf("GET %d: status %d: %s", i, res.StatusCode, body)
		}
	}
}

func TestProxyWaitsForUpstream(t *testing.T) {
	a := newBackend(t, "a", nil)
	p := New("web", Options{Logger: quiet, WaitForUpstream: 3 * time.Second})
	url := serve(t, p)

	go func() {
		time.Sleep(200 * time.Millisecond)
		p.SetUpstreams(addrs(a))
	}()
	start := time.Now()
	res, body := get(t, newClient(t), url)
	if res.StatusCode != 200 || body != "a:" {
		t.Errorf("status %d: %s", res.StatusCode, body)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("answered after %s, want about 200ms", took)
	}
}

func TestProxyNoUpstream(t *testing.T) {
	p := New("web", Options{Logger: quiet, WaitForUpstream: 200 * time.Millisecond})
	url := serve(t, p)
	start := time.Now()
	res, body := get(t, newClient(t), url)
	took := time.Since(start)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "service web has no healthy server") {
		t.Errorf("status %d: %q", res.StatusCode, body)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("answered after %s, want about 200ms", took)
	}
	if s := p.Stats(); s.Requests != 1 || s.Failures != 1 {
		t.Errorf("stats: %+v", s)
	}

	p = New("web", Options{Logger: quiet, WaitForUpstream: -1})
	url = serve(t, p)
	start = time.Now()
	if res, _ := get(t, newClient(t), url); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("without waiting: status %d", res.StatusCode)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("without waiting: answered after %s", took)
	}
}

// slowBackend answers after d and says when a request has started and finished.
func slowBackend(t *testing.T, d time.Duration) (addr string, started chan struct{}, finished *atomic.Bool) {
	started = make(chan struct{}, 10)
	finished = new(atomic.Bool)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(d)
		w.Write([]byte("slow"))
		finished.Store(true)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), started, finished
}

func TestProxyWaitIdle(t *testing.T) {
	addr, started, finished := slowBackend(t, 300*time.Millisecond)
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams([]string{addr})
	url := serve(t, p)

	if err := p.WaitIdle(t.Context(), "127.0.0.1:1"); err != nil {
		t.Errorf("unknown address: %v", err)
	}

	answered := make(chan string, 1)
	c := newClient(t)
	go func() { answered <- fetch(c, url) }()
	<-started
	p.SetUpstreams(nil)

	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := p.WaitIdle(short, addr)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 in flight") {
		t.Errorf("WaitIdle with a short deadline: %v", err)
	}

	if err := p.WaitIdle(t.Context(), addr); err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Error("WaitIdle returned before the request finished")
	}
	if got := <-answered; got != "200 slow" {
		t.Errorf("the request in flight got %s", got)
	}
	if s := p.Stats(); len(s.Upstreams) != 0 {
		t.Errorf("a drained server is still listed: %+v", s.Upstreams)
	}
}

func TestProxyGracefulShutdown(t *testing.T) {
	addr, started, _ := slowBackend(t, 300*time.Millisecond)
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams([]string{addr})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- p.Serve(ctx, ln) }()

	answered := make(chan string, 1)
	c := newClient(t)
	go func() { answered <- fetch(c, url) }()
	<-started
	cancel()
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if got := <-answered; got != "200 slow" {
		t.Errorf("the request in flight got %s", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("still serving after shutdown")
	}
}

// An upgraded connection (a WebSocket) is proxied, counts as in flight while open, and
// is closed when the proxy shuts down.
func TestProxyUpgrade(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	defer s.Close()
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams([]string{s.Listener.Addr().String()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- p.Serve(ctx, ln) }()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: example.test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", res.StatusCode)
	}
	io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if u := p.Stats().Upstreams; len(u) != 1 || u[0].InFlight != 1 {
		t.Errorf("an open upgraded connection is not in flight: %+v", u)
	}

	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the upgraded connection is still open after shutdown: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Upstreams[0].InFlight != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := p.Stats().Upstreams[0].InFlight; n != 0 {
		t.Errorf("%d in flight after the upgraded connection closed", n)
	}
}

// BenchmarkProxy measures the latency the proxy adds: each iteration sends one request
// straight to a server and one through the proxy, over loopback with keep-alives.
func BenchmarkProxy(b *testing.B) {
	up := newBackend(b, "a", nil)
	p := New("web", Options{Logger: quiet})
	p.SetUpstreams(addrs(up))
	url := serve(b, p)
	c := newClient(b)
	direct := up.URL

	do := func(u string) time.Duration {
		start := time.Now()
		res, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return time.Since(start)
	}
	do(direct)
	do(url)
	var viaDirect, viaProxy []time.Duration
	b.ResetTimer()
	for b.Loop() {
		viaDirect = append(viaDirect, do(direct))
		viaProxy = append(viaProxy, do(url))
	}
	b.StopTimer()
	slices.Sort(viaDirect)
	slices.Sort(viaProxy)
	q := func(d []time.Duration, f float64) float64 {
		return float64(d[int(f*float64(len(d)-1))]) / float64(time.Microsecond)
	}
	b.ReportMetric(q(viaDirect, 0.5), "direct-p50-µs")
	b.ReportMetric(q(viaDirect, 0.99), "direct-p99-µs")
	b.ReportMetric(q(viaProxy, 0.5), "proxy-p50-µs")
	b.ReportMetric(q(viaProxy, 0.99), "proxy-p99-µs")
	b.ReportMetric(q(viaProxy, 0.5)-q(viaDirect, 0.5), "added-p50-µs")
	b.ReportMetric(q(viaProxy, 0.99)-q(viaDirect, 0.99), "added-p99-µs")
}
