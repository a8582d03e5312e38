package frontdoor

import (
	"net/http"
	"strings"

	"github.com/kiln-build/kiln/internal/api"
)

// WithoutSession removes the dashboard's session cookie from a request to a service:
// browsers send cookies to every port of a host, and that one is the key to the
// daemon, not the service's business.
func WithoutSession(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if vals := r.Header.Values("Cookie"); len(vals) > 0 && strings.Contains(strings.Join(vals, ";"), api.SessionCookie) {
			r = r.Clone(r.Context())
			r.Header.Del("Cookie")
			for _, v := range vals {
				var kept []string
				for _, part := range strings.Split(v, ";") {
					name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
					if name != api.SessionCookie {
						kept = append(kept, strings.TrimSpace(part))
					}
				}
				if len(kept) > 0 {
					r.Header.Add("Cookie", strings.Join(kept, "; "))
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}
