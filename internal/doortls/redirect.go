package doortls

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Redirect returns a handler that sends every plain HTTP request to the same URL
// over HTTPS: the same host, path and query, on tlsPort (left out of the URL when
// it is 443). GET and HEAD get a 301; other methods a 308, which a client must
// repeat with the same method and body. A request without a Host is answered 400.
// To answer ACME HTTP-01 challenges too, wrap it: Manager.HTTPHandler(Redirect(p)).
func Redirect(tlsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" {
			http.Error(w, "HTTPS only, and this request names no host to send it to", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") { // an IPv6 address
			host = "[" + host + "]"
		}
		if tlsPort != 443 {
			host += ":" + strconv.Itoa(tlsPort)
		}
		code := http.StatusPermanentRedirect
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusMovedPermanently
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), code)
	})
}

// HSTS returns a middleware that tells browsers, on every response to a request
// that came over TLS, to use HTTPS only for this host for maxAge (whole seconds;
// 0 makes a browser forget it). Plain HTTP responses do not carry it: browsers
// ignore it there (RFC 6797, 8.1). A negative maxAge counts as 0.
func HSTS(maxAge time.Duration) func(http.Handler) http.Handler {
	maxAge = max(maxAge, 0)
	value := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS != nil {
				w.Header().Set("Strict-Transport-Security", value)
			}
			next.ServeHTTP(w, r)
		})
	}
}
