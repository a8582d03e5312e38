package doortls

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const appHost = "app.kiln.test"

// TestFileCertificate serves a site's certificate files over HTTP/2, then serves
// the files that replace them without a restart, and keeps the last good
// certificate while the files are broken or do not go together.
func TestFileCertificate(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	first := ca.leaf(t, appHost)
	certFile, keyFile := writePair(t, dir, first)
	logs := &logBuffer{}
	m, err := New([]Site{{Hosts: []string{appHost}, CertFile: certFile, KeyFile: keyFile}}, Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	m.checkEvery = 0 // look at the files at every handshake: no waiting in the test
	ln := listen(t)
	serveHTTPS(t, ln, m, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host)
	}))
	addr := ln.Addr().String()

	resp, err := client(t, ca.pool, addr).Get("https://" + appHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || string(body) != "hello from "+appHost {
		t.Fatalf("got %s over %s: %q; want 200 over HTTP/2", resp.Status, resp.Proto, body)
	}
	wantSerial := func(step string, p pair) {
		t.Helper()
		leaf, err := servedCert(t, addr, appHost, ca.pool)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if leaf.SerialNumber.Cmp(p.serial) != 0 {
			t.Fatalf("%s: served serial %v, want %v", step, leaf.SerialNumber, p.serial)
		}
	}
	wantSerial("first files", first)

	second := ca.leaf(t, appHost)
	writePair(t, dir, second)
	wantSerial("files replaced", second)

	writeFile(t, certFile, []byte("not a certificate\n"))
	wantSerial("certificate file broken", second)
	if l := logs.String(); !strings.Contains(l, "reloading a certificate") || !strings.Contains(l, certFile) {
		t.Fatalf("the broken file was not reported with its name; log:\n%s", l)
	}

	third := ca.leaf(t, appHost)
	writeFile(t, certFile, third.certPEM) // the key file still holds second's key
	wantSerial("certificate without its key", second)
	if l := logs.String(); !strings.Contains(l, "does not go with certificate file") {
		t.Fatalf("a key that does not go with its certificate was not reported; log:\n%s", l)
	}
	writeFile(t, keyFile, third.keyPEM)
	wantSerial("key written after its certificate", third)
}

// TestFileCertificateChecksAtMostEvery: within checkEvery of the last look, a
// handshake serves the certificate loaded without looking at the files.
func TestFileCertificateChecksAtMostEvery(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	first := ca.leaf(t, appHost)
	certFile, keyFile := writePair(t, dir, first)
	m, err := New([]Site{{Hosts: []string{appHost}, CertFile: certFile, KeyFile: keyFile}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.checkEvery = time.Hour
	writePair(t, dir, ca.leaf(t, appHost))
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: appHost})
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.SerialNumber.Cmp(first.serial) != 0 {
		t.Fatalf("files read again within the hour")
	}
}

// TestUpdate: a bad set of sites is refused with an error naming the site and
// the file, and the set in use stays; a good one replaces it whole.
func TestUpdate(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, ca.leaf(t, appHost, "www.kiln.test"))
	otherKey := filepath.Join(t.TempDir(), "key.pem")
	writeFile(t, otherKey, ca.leaf(t, appHost).keyPEM)
	good := Site{Hosts: []string{appHost}, CertFile: certFile, KeyFile: keyFile}
	m, err := New([]Site{good}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name  string
		sites []Site
		want  []string // in the error
	}{
		{"missing certificate", []Site{{Hosts: []string{"a.kiln.test"}, CertFile: missing, KeyFile: keyFile}},
			[]string{"a.kiln.test", missing, "no such file"}},
		{"key of another certificate", []Site{{Hosts: []string{appHost}, CertFile: certFile, KeyFile: otherKey}},
			[]string{appHost, otherKey, certFile, "does not go with", "does not match"}},
		{"host the certificate does not name", []Site{{Hosts: []string{"b.kiln.test"}, CertFile: certFile, KeyFile: keyFile}},
			[]string{"does not name host b.kiln.test", appHost}},
		{"host in two sites", []Site{good, {Hosts: []string{"WWW.kiln.test", appHost + "."}, ACME: true}},
			[]string{"host app.kiln.test is in two sites"}},
		{"ACME without a cache", []Site{{Hosts: []string{"c.kiln.test"}, ACME: true}},
			[]string{"c.kiln.test", "CacheDir"}},
		{"ACME and files", []Site{{Hosts: []string{appHost}, CertFile: certFile, KeyFile: keyFile, ACME: true}},
			[]string{"both ACME and certificate files"}},
		{"no key file", []Site{{Hosts: []string{appHost}, CertFile: certFile}}, []string{"needs both"}},
		{"ACME without a host", []Site{{ACME: true}}, []string{"site 1 of 1", "ACME needs the hosts"}},
		{"two sites without hosts", []Site{{CertFile: certFile, KeyFile: keyFile}, {CertFile: certFile, KeyFile: keyFile}},
			[]string{"two sites without hosts"}},
		{"no host, no key", []Site{{CertFile: certFile}}, []string{"site 1 of 1 has no host"}},
		{"a wildcard the certificate does not name", []Site{{Hosts: []string{"*.shop.kiln.test"}, CertFile: certFile, KeyFile: keyFile}},
			[]string{"does not name *.shop.kiln.test"}},
		{"an address", []Site{{Hosts: []string{"127.0.0.1"}, CertFile: certFile, KeyFile: keyFile}}, []string{"is an address"}},
		{"a port", []Site{{Hosts: []string{"app.kiln.test:8443"}, CertFile: certFile, KeyFile: keyFile}}, []string{"no port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Update(tc.sites)
			if err == nil {
				t.Fatal("Update accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: appHost}); err != nil {
				t.Fatalf("the set in use was lost: %v", err)
			}
		})
	}

	if err := m.Update([]Site{{Hosts: []string{"www.kiln.test"}, CertFile: certFile, KeyFile: keyFile}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: appHost}); !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("a host no longer in the set: got %v, want ErrUnknownHost", err)
	}
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "WWW.Kiln.Test."}); err != nil {
		t.Fatalf("the new set's host, in another case and with a dot: %v", err)
	}
}

// TestUnknownServerName: a handshake for a name no site has, or for none, fails
// (an alert to the client); the door goes on serving the others.
func TestUnknownServerName(t *testing.T) {
	ca := newCA(t)
	certFile, keyFile := writePair(t, t.TempDir(), ca.leaf(t, appHost))
	m, err := New([]Site{{Hosts: []string{appHost}, CertFile: certFile, KeyFile: keyFile}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	serveHTTPS(t, ln, m, http.NotFoundHandler())
	for _, name := range []string{"other.kiln.test", ""} {
		// Verification off: the server, not the client, is to refuse.
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			t.Errorf("server name %q: the handshake succeeded", name)
		} else if !strings.Contains(err.Error(), "internal error") {
			t.Errorf("server name %q: %v; want the server's alert", name, err)
		}
	}
	if _, err := servedCert(t, ln.Addr().String(), appHost, ca.pool); err != nil {
		t.Fatal(err)
	}
	_, err = m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.kiln.test"})
	if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "other.kiln.test") {
		t.Fatalf("got %v, want ErrUnknownHost naming the server name", err)
	}
}

// A wildcard site serves the names of one label under it; the site without hosts
// serves the names no other site has, and handshakes without a server name.
func TestWildcardAndFallback(t *testing.T) {
	ca := newCA(t)
	wildCert, wildKey := writePair(t, t.TempDir(), ca.leaf(t, "*.shop.kiln.test"))
	anyCert, anyKey := writePair(t, t.TempDir(), ca.leaf(t, "default.kiln.test"))
	m, err := New([]Site{{Hosts: []string{"*.Shop.kiln.test"}, CertFile: wildCert, KeyFile: wildKey},
		{CertFile: anyCert, KeyFile: anyKey}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"a.shop.kiln.test": "*.shop.kiln.test", "b.a.shop.kiln.test": "default.kiln.test",
		"shop.kiln.test": "default.kiln.test", "other.kiln.test": "default.kiln.test", "": "default.kiln.test",
	} {
		c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if got := c.Leaf.DNSNames[0]; got != want {
			t.Errorf("%q: served the certificate of %s, want %s", name, got, want)
		}
	}
}
