package doortls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv/pebble"
)

// TestACME has Pebble issue a certificate to a door's TLS port, validating it for
// real over TLS-ALPN-01 on that port (web.kiln.test resolved to 127.0.0.1 by
// pebble-challtestsrv), serves it over HTTP/2, keeps it in the cache with the
// cache's modes, and serves it from the cache with Pebble stopped.
func TestACME(t *testing.T) {
	ln := listen(t)
	p := strconv.Itoa(port(ln))
	peb := pebble.Start(t, pebble.Config{TLSPort: port(ln), HTTPPort: port(ln)})
	issuer, m, sites, opts := acmeDoor(t, ln, peb)
	cache := opts.CacheDir

	c := client(t, issuer, ln.Addr().String())
	get := func(c *http.Client, url string) *http.Response {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get(c, "https://"+acmeHost+":"+p+"/")
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("got %s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
	}
	served := resp.TLS.PeerCertificates[0]
	if err := served.VerifyHostname(acmeHost); err != nil {
		t.Fatal(err)
	}

	// The plain side of the port answers HTTP-01 paths itself, redirects the rest.
	if resp := get(c, "http://"+acmeHost+":"+p+"/.well-known/acme-challenge/no-such-token"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an HTTP-01 path with no token: %s, want 404", resp.Status)
	}
	if resp := get(c, "http://"+acmeHost+":"+p+"/page"); resp.StatusCode != 301 {
		t.Errorf("plain HTTP: %s, want 301", resp.Status)
	}
	// A name of no ACME site is refused before the CA is asked.
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.kiln.test"}); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("a name of no site: %v, want ErrUnknownHost", err)
	}

	checkMode(t, cache, 0o700)
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		checkMode(t, filepath.Join(cache, e.Name()), 0o600)
		found = found || e.Name() == acmeHost
	}
	if !found {
		t.Fatalf("no certificate for %s in the cache: %v", acmeHost, entries)
	}

	// A second door on the same cache, Pebble gone: the same certificate.
	peb.Stop()
	m2, err := New(sites, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln2 := listen(t)
	serveHTTPS(t, ln2, m2, protoHandler)
	resp = get(client(t, issuer, ln2.Addr().String()), "https://"+acmeHost+"/")
	if resp.StatusCode != 200 || !resp.TLS.PeerCertificates[0].Equal(served) {
		t.Fatalf("from the cache: %s, same certificate: %v", resp.Status, resp.TLS.PeerCertificates[0].Equal(served))
	}
}

// TestACMEHTTP01: where TLS-ALPN-01 fails (Pebble dials another port), the
// certificate is obtained over HTTP-01, answered on the plain side of the split port.
func TestACMEHTTP01(t *testing.T) {
	ln := listen(t)
	peb := pebble.Start(t, pebble.Config{HTTPPort: port(ln)})
	issuer, _, _, _ := acmeDoor(t, ln, peb)
	resp, err := client(t, issuer, ln.Addr().String()).Get("https://" + acmeHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].VerifyHostname(acmeHost) != nil {
		t.Fatalf("got %s, for %v", resp.Status, resp.TLS.PeerCertificates[0].DNSNames)
	}
}

const acmeHost = "web.kiln.test"

// protoHandler answers with the request's protocol.
var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })

// acmeDoor serves HTTPS for an ACME site on ln's TLS side, with certificates
// from peb, and Redirect with HTTP-01 on its plain side. It returns the root that
// verifies peb's certificates, the Manager and what made it.
func acmeDoor(t *testing.T, ln net.Listener, peb *pebble.Server) (*x509.CertPool, *Manager, []Site, Options) {
	t.Helper()
	issuer, err := peb.IssuingRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sites := []Site{{Hosts: []string{acmeHost}, ACME: true}}
	opts := Options{CacheDir: filepath.Join(t.TempDir(), "acme"), ACMEDirectory: peb.DirectoryURL,
		ACMERoots: peb.Roots, ACMEEmail: "ops@kiln.test"}
	m, err := New(sites, opts)
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, plainLn := SplitPlain(ln)
	serveHTTPS(t, tlsLn, m, protoHandler)
	serve(t, &http.Server{Handler: m.HTTPHandler(Redirect(port(ln))), ErrorLog: quietLog()}, plainLn)
	return issuer, m, sites, opts
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", path, got, want)
	}
}
