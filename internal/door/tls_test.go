package door

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
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

// httpsClient dials addr whatever the URL's host, trusting roots, over HTTP/2 when
// offered, and does not follow redirects.
func httpsClient(addr string, roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A door with ACME: Pebble validates the host over TLS-ALPN-01 on the door's own port
// and issues the certificate, which the door serves over HTTP/2 (with HSTS); plain
// HTTP on the same port is redirected; the certificate is cached with mode 0600.
func TestDoorACMEWithPebble(t *testing.T) {
	addr := freeAddr(t)
	p, _ := strconv.Atoi(port(t, addr))
	peb := pebble.Start(t, pebble.Config{TLSPort: p, HTTPPort: p})
	dir := t.TempDir()
	s := New(Options{Dir: dir})
	t.Cleanup(s.Shutdown)
	const host = "shop.kiln.test"
	err := s.Apply(context.Background(), Config{Generation: 1, Services: []Service{{
		Name: "shop", Listen: addr, Hosts: []string{host}, Upstreams: []string{backend(t, "shop")},
		TLS: &TLS{ACME: true, ACMEDirectory: peb.DirectoryURL, ACMERoots: peb.RootsFile, HSTS: 24 * time.Hour},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := peb.IssuingRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := httpsClient(addr, issuer)
	resp, err := c.Get("https://" + host + ":" + strconv.Itoa(p) + "/cart")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != "shop /cart" {
		t.Fatalf("HTTPS: %s over %s: %q, want 200 over HTTP/2", resp.Status, resp.Proto, body)
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); hsts != "max-age=86400" {
		t.Errorf("HSTS %q", hsts)
	}
	resp, err = c.Get("http://" + host + ":" + strconv.Itoa(p) + "/cart?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://"+host+":"+strconv.Itoa(p)+"/cart?x=1" {
		t.Errorf("plain HTTP: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	st, err := os.Stat(filepath.Join(dir, "certs", host))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("cached certificate: %v, %v", st, err)
	}
}

// Certificate files on one address for two hosts, with a plain-HTTP address that
// redirects to it; a service's file replaced by a broken one keeps the door serving.
func TestDoorCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	roots := x509.NewCertPool()
	certFile, keyFile := selfSigned(t, dir, roots, "a.kiln.test", "b.kiln.test")
	addr, plainAddr := freeAddr(t), freeAddr(t)
	s := New(Options{Dir: dir})
	t.Cleanup(s.Shutdown)
	tlsOf := func() *TLS { return &TLS{CertFile: certFile, KeyFile: keyFile, RedirectHTTP: plainAddr} }
	err := s.Apply(context.Background(), Config{Generation: 1, Services: []Service{
		{Name: "a", Listen: addr, Hosts: []string{"a.kiln.test"}, Upstreams: []string{backend(t, "a")}, TLS: tlsOf()},
		{Name: "b", Listen: addr, Hosts: []string{"b.kiln.test"}, Upstreams: []string{backend(t, "b")}, TLS: tlsOf()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := httpsClient(addr, roots)
	for _, h := range []string{"a", "b"} {
		resp, err := c.Get("https://" + h + ".kiln.test/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(b) != h+" /" {
			t.Errorf("%s: %s %q", h, resp.Proto, b)
		}
	}
	plain := httpsClient(plainAddr, roots)
	resp, err := plain.Post("http://a.kiln.test/form", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://a.kiln.test:" + port(t, addr) + "/form"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("redirect_http: %s to %q, want 308 to %q", resp.Status, resp.Header.Get("Location"), want)
	}
	// A key that does not go with the certificate is refused, and nothing changes.
	other, _ := selfSigned(t, t.TempDir(), x509.NewCertPool(), "a.kiln.test")
	bad := Config{Generation: 2, Services: []Service{{Name: "a", Listen: addr, Hosts: []string{"a.kiln.test"},
		Upstreams: []string{backend(t, "a")}, TLS: &TLS{CertFile: other, KeyFile: keyFile}}}}
	if err := s.Apply(context.Background(), bad); err == nil {
		t.Fatal("a certificate with another's key was accepted")
	}
	if resp, err := c.Get("https://b.kiln.test/"); err != nil {
		t.Fatalf("after a refused configuration: %v", err)
	} else {
		resp.Body.Close()
	}
}

// selfSigned writes a CA-signed certificate for hosts into dir and adds the CA to
// roots.
func selfSigned(t *testing.T, dir string, roots *x509.CertPool, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	roots.AddCert(caCert)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}
