package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// server starts an HTTP server on loopback whose /healthz answers what status returns.
func server(t *testing.T, status func() int) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status())
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func fixed(code int) func() int { return func() int { return code } }

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var healthz = Check{HTTPPath: "/healthz", Timeout: time.Second}

func TestProbeHTTP(t *testing.T) {
	ctx := t.Context()
	if err := Probe(ctx, server(t, fixed(200)), healthz); err != nil {
		t.Errorf("200: %v", err)
	}
	if err := Probe(ctx, server(t, fixed(204)), Check{HTTPPath: "healthz"}); err != nil {
		t.Errorf("204 with a path without a slash: %v", err)
	}

	err := Probe(ctx, server(t, fixed(500)), healthz)
	if err == nil || err.Error() != "GET /healthz: status 500" {
		t.Errorf("500: got %v, want GET /healthz: status 500", err)
	}
	err = Probe(ctx, server(t, fixed(503)), healthz)
	if err == nil || err.Error() != "GET /healthz: status 503" {
		t.Errorf("503: got %v", err)
	}
	if err := Probe(ctx, server(t, fixed(200)), Check{HTTPPath: "/missing"}); err == nil || err.Error() != "GET /missing: status 404" {
		t.Errorf("404: got %v", err)
	}
}

func TestProbeHTTPRedirectIsNotFollowed(t *testing.T) {
	var followed atomic.Bool
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/broken" {
			followed.Store(true)
			w.WriteHeader(500)
			return
		}
		http.Redirect(w, r, "/broken", http.StatusFound)
	}))
	defer s.Close()
	if err := Probe(t.Context(), s.Listener.Addr().String(), healthz); err != nil {
		t.Errorf("302: %v", err)
	}
	if followed.Load() {
		t.Error("the redirect was followed")
	}
}

func TestProbeHTTPSlow(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	defer close(release)

	start := time.Now()
	err := Probe(t.Context(), s.Listener.Addr().String(), Check{HTTPPath: "/healthz", Timeout: 100 * time.Millisecond})
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) || err.Error() != "GET /healthz: timed out after 100ms" {
		t.Errorf("got %v, want GET /healthz: timed out after 100ms", err)
	}
	if took < 100*time.Millisecond || took > time.Second {
		t.Errorf("took %s, want about 100ms", took)
	}
}

func TestProbeRefused(t *testing.T) {
	addr := refusedAddr(t)
	err := Probe(t.Context(), addr, healthz)
	if want := "GET /healthz: dial " + addr + ": connection refused"; err == nil || err.Error() != want {
		t.Errorf("HTTP: got %v, want %s", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("HTTP: %v is not ECONNREFUSED", err)
	}
	err = Probe(t.Context(), addr, Check{TCP: true})
	if want := "dial " + addr + ": connection refused"; err == nil || err.Error() != want {
		t.Errorf("TCP: got %v, want %s", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP: %v is not ECONNREFUSED", err)
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := Probe(t.Context(), ln.Addr().String(), Check{TCP: true}); err != nil {
		t.Errorf("listening port: %v", err)
	}
}

func TestProbeInvalidCheck(t *testing.T) {
	for _, c := range []Check{{}, {HTTPPath: "/", TCP: true}} {
		if err := Probe(t.Context(), "127.0.0.1:1", c); !errors.Is(err, ErrInvalidCheck) {
			t.Errorf("%+v: got %v, want ErrInvalidCheck", c, err)
		}
		if err := WaitHealthy(t.Context(), "127.0.0.1:1", c, time.Millisecond, 0, 0, 1); !errors.Is(err, ErrInvalidCheck) {
			t.Errorf("WaitHealthy %+v: got %v, want ErrInvalidCheck", c, err)
		}
	}
}

func TestProbeContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Probe(ctx, server(t, fixed(200)), healthz); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestWaitHealthyImmediately(t *testing.T) {
	addr := server(t, fixed(200))
	start := time.Now()
	if err := WaitHealthy(t.Context(), addr, healthz, 10*time.Millisecond, 0, 0, 1); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("took %s for a healthy server", took)
	}
}

// A server that starts failing and becomes healthy after a delay passes the gate once it
// has passed the threshold and stayed healthy for min_healthy.
func TestWaitHealthyAfterDelay(t *testing.T) {
	up := time.Now().Add(300 * time.Millisecond)
	var probes atomic.Int64
	addr := server(t, func() int {
		probes.Add(1)
		if time.Now().Before(up) {
			return 503
		}
		return 200
	})
	const minHealthy = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := WaitHealthy(ctx, addr, healthz, 20*time.Millisecond, minHealthy, 0, 3); err != nil {
		t.Fatal(err)
	}
	// Healthy from 300ms, three passes need 40ms more, then min_healthy.
	if early := up.Add(40*time.Millisecond + minHealthy); time.Now().Before(early) {
		t.Errorf("passed the gate %s too early", time.Until(early))
	}
	if n := probes.Load(); n < 15 {
		t.Errorf("%d probes, want about 28", n)
	}
}

// A server that fails every other probe never passes a threshold of 2; the error names
// the deadline and the failing probe.
func TestWaitHealthyFlapping(t *testing.T) {
	var n atomic.Int64
	addr := server(t, func() int {
		if n.Add(1)%2 == 0 {
			return 503
		}
		return 200
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := WaitHealthy(ctx, addr, healthz, 10*time.Millisecond, 0, 0, 2)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	if want := "context deadline exceeded: last probe: GET /healthz: status 503"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if n.Load() < 10 {
		t.Errorf("only %d probes", n.Load())
	}
}

// Failures within the start period are ignored, so the same flapping server passes.
func TestWaitHealthyStartPeriod(t *testing.T) {
	var n atomic.Int64
	addr := server(t, func() int {
		if n.Add(1)%2 == 0 {
			return 503
		}
		return 200
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := WaitHealthy(ctx, addr, healthz, 10*time.Millisecond, 0, time.Minute, 3); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 5 {
		t.Errorf("%d probes, want 5 (pass, fail, pass, fail, pass)", got)
	}
}

// A failure during min_healthy starts the count over.
func TestWaitHealthyMinHealthyReset(t *testing.T) {
	start := time.Now()
	addr := server(t, func() int {
		if d := time.Since(start); d > 100*time.Millisecond && d < 200*time.Millisecond {
			return 500
		}
		return 200
	})
	const minHealthy = 250 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := WaitHealthy(ctx, addr, healthz, 10*time.Millisecond, minHealthy, 0, 1); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 200*time.Millisecond+minHealthy {
		t.Errorf("passed after %s, before the server had been healthy for min_healthy again", took)
	}
}

// A server that passes but not yet for min_healthy when ctx ends says so.
func TestWaitHealthyDeadlineDuringMinHealthy(t *testing.T) {
	addr := server(t, fixed(200))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := WaitHealthy(ctx, addr, healthz, 10*time.Millisecond, time.Minute, 0, 1)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "of min_healthy 1m0s") {
		t.Errorf("got %v", err)
	}
}

// A refused TCP port: the error wraps both the deadline and the refusal.
func TestWaitHealthyTCPRefused(t *testing.T) {
	addr := refusedAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := WaitHealthy(ctx, addr, Check{TCP: true}, 10*time.Millisecond, 0, 0, 1)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("got %v, want deadline exceeded and connection refused", err)
	}
	if want := "context deadline exceeded: last probe: dial " + addr + ": connection refused"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// A server that answers 404 FailAfter times in a row fails the gate at once, with the
// answer; one that answers 503 once between passes, or whose failures are refusals (it
// is not up yet), waits for its deadline as before.
func TestWaitHealthyDefinitiveAnswers(t *testing.T) {
	addr := server(t, fixed(404))
	check := Check{HTTPPath: "/nope", Timeout: time.Second, FailAfter: 3}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := WaitHealthy(ctx, addr, check, 10*time.Millisecond, 0, 0, 1)
	if !errors.Is(err, ErrDefinitive) || !strings.Contains(err.Error(), "status 404, 3 times in a row") {
		t.Fatalf("WaitHealthy = %v, want ErrDefinitive after 3 answers", err)
	}
	if ctx.Err() != nil {
		t.Fatal("it waited for the deadline")
	}

	// Within the start period answers do not count.
	sctx, scancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer scancel()
	if err := WaitHealthy(sctx, addr, check, 10*time.Millisecond, 0, time.Hour, 1); errors.Is(err, ErrDefinitive) {
		t.Errorf("answers within the start period counted: %v", err)
	}

	var n atomic.Int64
	flaky := server(t, func() int {
		if n.Add(1)%2 == 0 {
			return 503
		}
		return 200
	})
	fctx, fcancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer fcancel()
	if err := WaitHealthy(fctx, flaky, Check{HTTPPath: "/healthz", FailAfter: 2}, 10*time.Millisecond, time.Hour, 0, 1); errors.Is(err, ErrDefinitive) {
		t.Errorf("failures that are not in a row counted: %v", err)
	}

	rctx, rcancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer rcancel()
	if err := WaitHealthy(rctx, refusedAddr(t), Check{HTTPPath: "/healthz", FailAfter: 1}, 10*time.Millisecond, 0, 0, 1); errors.Is(err, ErrDefinitive) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("refused connections counted as answers: %v", err)
	}
}
