package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Three runs of the latency part over HTTP and HTTPS, kiln's door unavailable over
// HTTPS: what the front doors add is computed run by run, the goals from the medians,
// and the goals over HTTPS are not evaluated.
func TestDoorConclude(t *testing.T) {
	r := &Result{Scenario: "door", Title: "Front door", Date: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC), Runs: 3}
	sum := func(p50, p99 float64) LoadSummary {
		return LoadSummary{Service: LoadLatency{P50: p50, P99: p99}, Latency: LoadLatency{P50: p50 + 0.5, P99: p99 + 1}}
	}
	direct := []float64{0.2, 0.3, 0.2}
	kiln := []float64{0.4, 0.45, 0.5}  // adds 0.2, 0.15, 0.3: median 0.2
	kamal := []float64{0.6, 0.5, 0.55} // adds 0.4, 0.2, 0.35: median 0.35
	httpsDirect := []float64{0.3, 0.3, 0.3}
	httpsKamal := []float64{0.5, 0.6, 0.4} // adds 0.2, 0.3, 0.1: median 0.2
	for i := range 3 {
		addDoorLatency(r, "HTTP", map[string]LoadSummary{
			latencyDirect: sum(direct[i], direct[i]*3), "kiln door": sum(kiln[i], kiln[i]*3), "kamal-proxy": sum(kamal[i], kamal[i]*10),
		})
		addDoorLatency(r, "HTTPS", map[string]LoadSummary{latencyDirect: sum(httpsDirect[i], 1), "kamal-proxy": sum(httpsKamal[i], 3)})
		r.Add(doorSystem("kiln door", "HTTP"), satThroughput, "req/s", 9000+float64(i)*100)
		r.Add(doorSystem("kamal-proxy", "HTTP"), satThroughput, "req/s", 7000)
		r.Add(doorSystem(latencyDirect, "HTTP"), satThroughput, "req/s", 20000)
		addDoorSaturation(r, "HTTP", map[string]LoadSummary{"kiln door": {OK: 90000 + i*1000, Seconds: 10}, "kamal-proxy": {OK: 70000, Seconds: 10}})
		addDoorSaturation(r, "HTTPS", map[string]LoadSummary{"kamal-proxy": {OK: 70000, Seconds: 10}}) // no kiln: no ratio
	}
	addDoorLatency(r, "HTTP", map[string]LoadSummary{"kiln door": sum(9, 9)}) // no direct load: nothing added
	if s := r.series(doorAdded("kiln door", "HTTP"), "p50 latency"); s == nil || s.Summary.N != 3 || math.Abs(s.Summary.Median-0.2) > 1e-9 {
		t.Fatalf("kiln's added p50: %+v", s)
	}
	// Each run: kamal-proxy's p99 (10× its p50) less the direct one (3×): 5.4, 4.1, 4.9;
	// from schedule, both 1 ms later.
	if m, _ := r.Median(doorAdded("kamal-proxy", "HTTP"), "p99 from schedule"); math.Abs(m-4.9) > 1e-9 {
		t.Errorf("kamal-proxy's added p99 from schedule = %v", m)
	}
	r.Failf("kiln door, HTTPS: unavailable: kiln door does not serve its TLS service")
	doorConclude(r, []doorProto{doorProtos[0], doorProtos[1]})

	met := map[string]bool{}
	for _, g := range r.Goals {
		met[g.Goal] = g.Met
	}
	for goal, want := range map[string]bool{
		"kiln's door adds less than kamal-proxy at p50, HTTP (bound: kamal-proxy's)":               true,
		"kiln's door adds less than kamal-proxy at p99, HTTP (bound: kamal-proxy's)":               true,
		"kiln's door saturates higher than kamal-proxy, HTTP (kamal-proxy's throughput / kiln's)":  true,
		fmt.Sprintf("kiln's door adds < 1 ms at p99, %d requests/s, HTTP", doorRate):               true,
		"kiln's door adds less than kamal-proxy at p50, HTTPS (bound: kamal-proxy's)":              false,
		"kiln's door saturates higher than kamal-proxy, HTTPS (kamal-proxy's throughput / kiln's)": false,
	} {
		got, ok := met[goal]
		if want && (!ok || !got) {
			t.Errorf("goal %q: recorded %v, met %v; want met", goal, ok, got)
		}
		if !want && ok {
			t.Errorf("goal %q was evaluated without kiln's HTTPS figures", goal)
		}
	}

	path, err := r.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	md := Markdown(got)
	for _, want := range []string{
		"## Latency added by the front door at 1000 requests/s",
		"| added by kiln door, HTTP | 0.200 ms (0.150–0.300) | 0.600 ms (0.450–0.900) |",
		"| added by kiln door, HTTPS | – | – | – | – |",
		"| added by kamal-proxy, HTTPS | 0.200 ms (0.100–0.300) | 2.00 ms |",
		// kiln less kamal-proxy in each run: -0.2, -0.05, -0.05
		"| kiln door − kamal-proxy, run by run, HTTP | -0.050 ms (-0.200 to -0.050) |",
		"| kiln door − kamal-proxy, run by run, HTTPS | – |",
		// 70000 / 90000, 91000, 92000
		"| kamal-proxy / kiln door, run by run, HTTP | 0.769× (0.761–0.778) | – |",
		"| kamal-proxy / kiln door, run by run, HTTPS | – |",
		"## Saturation: 64 keep-alive connections, closed loop, 10s",
		"| kiln door, HTTP | 9100.0 req/s (9000.0–9200.0) | – |",
		"| kamal-proxy / kiln door, throughput, HTTP | kamal-proxy, HTTP / throughput | kiln door, HTTP / throughput | 0.77× |",
		"| kiln's door adds less than kamal-proxy at p50, HTTP (bound: kamal-proxy's) | 0.200 ms | < 0.350 ms | yes |",
		"- kiln door, HTTPS: unavailable: kiln door does not serve its TLS service",
		"Goals not evaluated, for want of figures (see the failed runs): kiln's door adds less than kamal-proxy at p50, HTTPS",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestDoorCases(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "http https"},
		{[]string{"h2", "http"}, "http h2"},
	} {
		got, err := doorCases(c.in)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range got {
			names = append(names, p.name)
		}
		if strings.Join(names, " ") != c.want {
			t.Errorf("doorCases(%q) = %q, want %q", c.in, names, c.want)
		}
	}
	if _, err := doorCases([]string{"http3"}); err == nil {
		t.Error("an unknown protocol was taken")
	}
}

// The certificate verifies for localhost and 127.0.0.1 with itself as the only root,
// in a real handshake, and for no other name.
func TestSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := writeSelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake, on purpose
	srv.StartTLS()
	defer srv.Close()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("cert.pem holds no certificate")
	}
	get := func(serverName string) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName}}}
		defer c.CloseIdleConnections()
		res, err := c.Get(srv.URL)
		if err != nil {
			return err
		}
		res.Body.Close()
		return nil
	}
	for _, name := range []string{doorHost, "127.0.0.1"} {
		if err := get(name); err != nil {
			t.Errorf("server name %s: %v", name, err)
		}
	}
	if err := get("example.com"); err == nil {
		t.Error("the certificate verified for example.com")
	}
}

func TestDescribeKamalProxyRefusesAnotherBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := describeKamalProxy(self); err == nil || !strings.Contains(err.Error(), "is not kamal-proxy") {
		t.Errorf("the test binary was taken for kamal-proxy: %v", err)
	}
	if _, err := describeKamalProxy(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing file was taken for kamal-proxy")
	}
	b := kamalProxyBuild{Module: "github.com/basecamp/kamal-proxy", Version: "(devel)", Go: "go1.26.8", Commit: "d929", CommitTime: "2026-08-20T23:18:47Z",
		Settings: map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"}}
	if got, want := b.String(), "github.com/basecamp/kamal-proxy (devel), commit d929 (2026-08-20T23:18:47Z), built with go1.26.8 (-trimpath=true CGO_ENABLED=0)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// bench/loadgen's closed loop and TLS flags, against a TLS server with the scenario's
// certificate: the connections are opened before the timed run, the certificate is
// verified for doorHost, and HTTP/1.1 or h2 is what -h2 says.
func TestLoadgenClosedLoopOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bench/loadgen")
	}
	bin := buildLoadgen(t)
	dir := t.TempDir()
	certFile, keyFile, err := writeSelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	hosts := make(chan string, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hosts <- r.Host:
		default:
		}
		fmt.Fprint(w, "Hello from kiln!\nversion: 1\nserver: s\n")
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes, on purpose
	srv.StartTLS()
	defer srv.Close()
	rig := &doorRig{loadgen: bin, dir: dir, cert: certFile}
	for _, p := range []doorProto{doorProtos[1], doorProtos[2]} {
		s, err := rig.load(context.Background(), srv.URL+"/", p, "-conns", "3", "-duration", "300ms")
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[p.h2]
		if s.Conns != 3 || s.Dials != 0 || s.OK == 0 || s.Failed != 0 || s.Protocols[want] != s.OK || s.Seconds <= 0 {
			t.Errorf("%s: %+v", p.label, s)
		}
	}
	if h := <-hosts; h != doorHost {
		t.Errorf("Host sent: %q, want %q", h, doorHost)
	}
	// Without the certificate trusted, every request fails.
	rig.cert = ""
	s, err := rig.load(context.Background(), srv.URL+"/", doorProto{name: "http"}, "-rate", "20", "-duration", "200ms")
	if err != nil {
		t.Fatal(err)
	}
	if s.OK != 0 || s.Errors == 0 {
		t.Errorf("an untrusted certificate was accepted: %+v", s)
	}
}

// The configuration the scenario writes is one `kiln door` serves: kiln is built from
// this repository and run standalone on it, in front of a test server. Over HTTPS only
// when this kiln's door serves TLS (the scenario reports it unavailable otherwise).
func TestKilnDoorServesTheConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kiln")
	}
	dir := t.TempDir()
	kiln := filepath.Join(dir, "kiln")
	if out, err := exec.Command("go", "build", "-C", "../..", "-o", kiln, "./cmd/kiln").CombinedOutput(); err != nil {
		t.Fatalf("building kiln: %v\n%s", err, out)
	}
	certFile, keyFile, err := writeSelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from upstream\n") }))
	defer up.Close()
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	listen, tlsListen := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfg, err := doorConfig(listen, tlsListen, strings.TrimPrefix(up.URL, "http://"), certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	doorDir := filepath.Join(dir, "door")
	if err := os.Mkdir(doorDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(doorDir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := startProc(nil, filepath.Join(dir, "door.log"), nil, kiln, "door", "--dir", doorDir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	get := func(c *http.Client, url string) (string, error) {
		res, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", res.Status, b)
		}
		return string(b), err
	}
	var body string
	err = waitFor(context.Background(), 15*time.Second, 50*time.Millisecond, "kiln door answering", func() (bool, error) {
		if why := p.exited(); why != "" {
			t.Fatal(why)
		}
		var err error
		body, err = get(http.DefaultClient, "http://"+listen+"/")
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if body != "from upstream\n" {
		t.Errorf("through the door: %q", body)
	}
	pemBytes, _ := os.ReadFile(certFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	// The door routes HTTPS by host, as the scenario's load asks for it: doorHost.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: doorHost},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", tlsListen)
		}}}
	defer c.CloseIdleConnections()
	_, tlsPort, _ := net.SplitHostPort(tlsListen)
	body, err = get(c, "https://"+net.JoinHostPort(doorHost, tlsPort)+"/")
	if err != nil && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		t.Logf("this kiln's door does not serve TLS yet (%v): the scenario reports its HTTPS rows unavailable", err)
		return
	}
	if err != nil || body != "from upstream\n" {
		t.Errorf("through the door over HTTPS: %q, %v", body, err)
	}
}

// buildLoadgen builds bench/loadgen (a module of its own) into a test directory.
func buildLoadgen(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../loadgen")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "loadgen")
	if out, err := exec.Command("go", "build", "-C", root, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building bench/loadgen: %v\n%s", err, out)
	}
	return bin
}
