package doortls

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		method, url, host string
		tlsPort           int
		code              int
		location          string
	}{
		{"GET", "/a/b?q=1&r=%20", "app.kiln.test:8080", 8443, 301, "https://app.kiln.test:8443/a/b?q=1&r=%20"},
		{"HEAD", "/", "app.kiln.test", 8443, 301, "https://app.kiln.test:8443/"},
		{"GET", "/x", "app.kiln.test:80", 443, 301, "https://app.kiln.test/x"},
		{"POST", "/form?id=3", "app.kiln.test:8443", 8443, 308, "https://app.kiln.test:8443/form?id=3"},
		{"PUT", "/", "app.kiln.test", 443, 308, "https://app.kiln.test/"},
		{"GET", "/v6", "[::1]:8080", 8443, 301, "https://[::1]:8443/v6"},
		{"GET", "/v6", "[::1]", 443, 301, "https://[::1]/v6"},
		{"GET", "/", "", 8443, 400, ""},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		r.Host = tc.host
		w := httptest.NewRecorder()
		Redirect(tc.tlsPort).ServeHTTP(w, r)
		if w.Code != tc.code || w.Header().Get("Location") != tc.location {
			t.Errorf("%s http://%s%s to port %d: got %d %q, want %d %q",
				tc.method, tc.host, tc.url, tc.tlsPort, w.Code, w.Header().Get("Location"), tc.code, tc.location)
		}
	}
}

// TestHSTS: the header is on responses over TLS, not over plain HTTP.
func TestHSTS(t *testing.T) {
	ca := newCA(t)
	certFile, keyFile := writePair(t, t.TempDir(), ca.leaf(t, appHost))
	m, err := New([]Site{{Hosts: []string{appHost}, CertFile: certFile, KeyFile: keyFile}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := HSTS(365 * 24 * time.Hour)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tlsLn, plainLn := listen(t), listen(t)
	serveHTTPS(t, tlsLn, m, h)
	serve(t, &http.Server{Handler: h}, plainLn)

	for _, tc := range []struct{ url, addr, want string }{
		{"https://" + appHost + "/", tlsLn.Addr().String(), "max-age=31536000"},
		{"http://" + appHost + "/", plainLn.Addr().String(), ""},
	} {
		resp, err := client(t, ca.pool, tc.addr).Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); got != tc.want {
			t.Errorf("%s: Strict-Transport-Security %q, want %q", tc.url, got, tc.want)
		}
	}
}
