package canary

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	testprom "github.com/kiln-build/kiln/internal/testenv/prometheus"
)

// TestPrometheusQuery asks a real Prometheus (Debian's, run by the test) about a
// metric it scrapes from the test: a canary revision's errors and the stable one's.
func TestPrometheusQuery(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starting Prometheus and waiting for its first scrape takes seconds")
	}
	reg := prometheus.NewRegistry()
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "checkout_errors_total", Help: "Failed checkouts, by revision.",
	}, []string{"revision"})
	reg.MustRegister(errs)
	errs.WithLabelValues("4").Add(3)
	errs.WithLabelValues("3").Add(1)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(target.Close)

	p := Prometheus{URL: testprom.Start(t, testprom.Target{Addr: strings.TrimPrefix(target.URL, "http://")})}
	ctx := t.Context()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Both series come in the same scrape.
		n, err := p.Query(ctx, "count(checkout_errors_total)")
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not scrape the test's metrics within 30s: %v, %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, tc := range []struct {
		query string
		want  float64
	}{
		{Expand(`checkout_errors_total{revision="$CANARY_REVISION"}`, 4, 3), 3},
		{Expand(`sum(checkout_errors_total{revision=~"$CANARY_REVISION|$STABLE_REVISION"})`, 4, 3), 4},
		{`scalar(vector(0.25))`, 0.25},
	} {
		if got, err := p.Query(ctx, tc.query); err != nil || got != tc.want {
			t.Errorf("Query(%q) = %v, %v; want %v", tc.query, got, err, tc.want)
		}
	}

	for _, tc := range []struct {
		query, want string
	}{
		{Expand(`checkout_errors_total{revision="$CANARY_REVISION"}`, 5, 4), "no sample"}, // never scraped
		{`checkout_errors_total`, "2 samples"},
		{`sum(checkout_errors_total`, "parse error"}, // the API's text
		{`NaN`, "returned NaN"},
		{`checkout_errors_total[1m]`, "returned a matrix"},
		{`"a string"`, "string"},
	} {
		_, err := p.Query(ctx, tc.query)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Query(%q) = %v; want an error saying %q", tc.query, err, tc.want)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, p.URL) || !strings.Contains(msg, fmt.Sprintf("%q", tc.query)) {
			t.Errorf("Query(%q): %q names not both the server and the query", tc.query, msg)
		}
	}
	if _, err := p.Query(ctx, `absent_metric_of_the_test`); !errors.Is(err, ErrNoSample) {
		t.Errorf("an empty vector gave %v; want ErrNoSample", err)
	}

	closed := Prometheus{URL: "http://" + freeAddr(t)}
	if _, err := closed.Query(ctx, "vector(1)"); err == nil || !strings.Contains(err.Error(), closed.URL) {
		t.Errorf("Query of a server not listening = %v; want an error naming %s", err, closed.URL)
	}
}

// TestPrometheusUntrustedServer forces what a real Prometheus does not do: answers too
// large, redirects to another host, HTTP errors with a body, a password in the URL.
func TestPrometheusUntrustedServer(t *testing.T) {
	var elsewhereHit bool
	var mu sync.Mutex
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhereHit = true
		mu.Unlock()
		io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}`)
	}))
	t.Cleanup(elsewhere.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/huge/api/v1/query":
			io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[`)
			w.Write(bytes.Repeat([]byte(" "), maxResponse))
			io.WriteString(w, `]}}`)
		case "/redirect/api/v1/query":
			http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
		case "/bad-gateway/api/v1/query":
			http.Error(w, "upstream prometheus is down", http.StatusBadGateway)
		case "/exact/api/v1/query":
			// Exactly the bound: read whole.
			const answer = `{"status":"success","data":{"resultType":"scalar","result":[0,"7"]}}`
			io.WriteString(w, answer[:len(answer)-1])
			w.Write(bytes.Repeat([]byte(" "), maxResponse-len(answer)))
			io.WriteString(w, "}")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	ctx := t.Context()
	if got, err := (Prometheus{URL: srv.URL + "/exact"}).Query(ctx, "x"); err != nil || got != 7 {
		t.Errorf("an answer of exactly %d bytes gave %v, %v; want 7", maxResponse, got, err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{"/huge", "response larger than 4 MiB"},
		{"/redirect", "redirected to another host"},
		{"/bad-gateway", "upstream prometheus is down"},
	} {
		_, err := (Prometheus{URL: srv.URL + tc.path}).Query(ctx, "x")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want an error saying %q", tc.path, err, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if elsewhereHit {
		t.Error("the client followed a redirect to another host")
	}

	withPassword := Prometheus{URL: "http://kiln:hunter2@" + freeAddr(t)}
	if _, err := withPassword.Query(ctx, "x"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Query with a password in the URL = %v; want an error without the password", err)
	}
	if _, err := (Prometheus{URL: "127.0.0.1:9090"}).Query(ctx, "x"); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
		t.Errorf("Query of a URL without a scheme = %v; want an error saying so", err)
	}
}

func TestExpand(t *testing.T) {
	got := Expand(`rate(x{rev="$CANARY_REVISION"}[1m]) / rate(x{rev="$STABLE_REVISION"}[1m]) > $CANARY_REVISION`, 12, 11)
	if want := `rate(x{rev="12"}[1m]) / rate(x{rev="11"}[1m]) > 12`; got != want {
		t.Errorf("Expand = %s; want %s", got, want)
	}
	if got := Expand("up", 2, 1); got != "up" {
		t.Errorf("Expand without variables = %s; want it unchanged", got)
	}
}

// freeAddr is a loopback address nothing listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
