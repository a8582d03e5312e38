package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv/pebble"
)

// routedSpec is the example with a second service, api, on the same address as
// hello: hello for host shop.kiln.test, api under /api of any host (its greeting is
// another file, so that answers tell the services apart).
func routedSpec(t *testing.T, d *deployment, extra string) {
	t.Helper()
	editSpec(t, d.dir, `  listen   = var.listen`, `  listen   = var.listen
  hosts    = ["shop.kiln.test"]`+extra)
	p := filepath.Join(d.dir, "kiln.hcl")
	b, _ := os.ReadFile(p)
	api := `
service "` + d.service + `-api" {
  image    = image.hello
  replicas = 1
  port     = 8080
  listen   = var.listen
  path     = "/api"
  env      = { GREETING_FILE = "/srv/static/index.html" }` + extra + `
  health {
    http     = "/healthz"
    interval = "500ms"
  }
}
`
	os.WriteFile(p, append(b, api...), 0o644)
}

func getHost(t *testing.T, c *http.Client, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Two services on one address, routed by host and by path; a request no service
// claims gets 404; a second service claiming the same route is refused by validate
// with both places.
func TestRoutesShareAnAddress(t *testing.T) {
	d := newDeployment(t)
	routedSpec(t, d, "")
	t.Cleanup(func() { d.kiln(nil, "destroy", d.service+"-api") })
	d.startDaemon("kiln is serving", "up")
	c := &http.Client{Timeout: 10 * time.Second}
	if code, body := getHost(t, c, d.url+"/", "shop.kiln.test"); code != 200 || !strings.Contains(body, "Hello from kiln!") {
		t.Errorf("host shop.kiln.test: %d %q", code, body)
	}
	if code, body := getHost(t, c, d.url+"/api/", "anything.example"); code != 200 || !strings.Contains(body, "A static file") {
		t.Errorf("path /api/: %d %q", code, body)
	}
	// A host of its own beats a longer path of any host (as kamal-proxy routes): hello
	// answers, and has no /api/.
	if code, body := getHost(t, c, d.url+"/api/", "shop.kiln.test"); code != 404 || strings.Contains(body, "no service here") {
		t.Errorf("path /api/ of shop.kiln.test: %d %q, want hello's own 404", code, body)
	}
	if code, body := getHost(t, c, d.url+"/", "other.example"); code != 404 || !strings.Contains(body, "no service here") {
		t.Errorf("a request of no service: %d %q", code, body)
	}

	// Maintenance, then resume: the door answers for the service, then serves again.
	if r := d.kiln(nil, "pause", d.service, "--maintenance", "Back at noon."); r.code != 0 {
		t.Fatalf("pause: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if code, body := getHost(t, c, d.url+"/", "shop.kiln.test"); code != 503 || !strings.Contains(body, "Back at noon.") {
		t.Errorf("in maintenance: %d %q", code, body)
	}
	if code, _ := getHost(t, c, d.url+"/api/", "x.example"); code != 200 {
		t.Errorf("the other service of the address, while one is in maintenance: %d", code)
	}
	if r := d.kiln(nil, "resume", d.service); r.code != 0 {
		t.Fatalf("resume: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if code, _ := getHost(t, c, d.url+"/", "shop.kiln.test"); code != 200 {
		t.Errorf("after resume: %d", code)
	}
	if r := d.kiln(nil, "pause", "no-such-service"); r.code == 0 || !strings.Contains(r.stderr, "no front door") {
		t.Errorf("pause of a service that is not there: %d %s", r.code, r.stderr)
	}

	// A third service taking api's route: refused, naming both declarations.
	p := filepath.Join(d.dir, "kiln.hcl")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, append(b, []byte(`
service "clash" {
  image  = image.hello
  port   = 8080
  listen = var.listen
  path   = "/api"
}
`)...), 0o644)
	r := d.kiln(nil, "validate")
	if r.code == 0 || !strings.Contains(r.stderr+r.stdout, "kiln.hcl:") || !strings.Contains(r.stderr+r.stdout, "clash") {
		t.Fatalf("validate of a clashing route: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("validate says:\n%s%s", r.stdout, r.stderr)
}

// HTTPS with a certificate from Pebble (a real ACME server, validating over
// TLS-ALPN-01 on the door's own port), HTTP/2, and plain HTTP redirected.
func TestDoorServesACMECertificate(t *testing.T) {
	d := newDeployment(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(d.url, "http://"))
	p, _ := strconv.Atoi(port)
	peb := pebble.Start(t, pebble.Config{TLSPort: p, HTTPPort: p})
	editSpec(t, d.dir, `  listen   = var.listen`, `  listen   = var.listen
  hosts    = ["shop.kiln.test"]
  tls {
    acme           = true
    acme_directory = "`+peb.DirectoryURL+`"
    acme_roots     = "`+peb.RootsFile+`"
    hsts           = "1h"
  }`)
	d.startDaemon("kiln is serving", "up")
	issuer, err := peb.IssuingRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(d.url, "http://")
	c := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dl net.Dialer
				return dl.DialContext(ctx, "tcp", addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: issuer},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get("https://shop.kiln.test:" + port + "/")
	if err != nil {
		t.Fatalf("HTTPS through the door: %v\n%s", err, d.logs.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(body), "Hello from kiln!") {
		t.Fatalf("HTTPS: %s over %s: %q", resp.Status, resp.Proto, body)
	}
	t.Logf("served %s, issued by %s, over %s", resp.TLS.PeerCertificates[0].DNSNames, resp.TLS.PeerCertificates[0].Issuer, resp.Proto)
	if resp.Header.Get("Strict-Transport-Security") != "max-age=3600" {
		t.Errorf("HSTS: %q", resp.Header.Get("Strict-Transport-Security"))
	}
	resp, err = c.Get("http://shop.kiln.test:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://shop.kiln.test:"+port+"/" {
		t.Errorf("plain HTTP: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
}
