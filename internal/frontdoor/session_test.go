package frontdoor

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
)

// A front door passes a service every cookie but the dashboard's session.
func TestWithoutSession(t *testing.T) {
	var got []string
	h := WithoutSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Values("Cookie") }))
	for _, c := range []struct {
		in   []string
		want []string
	}{
		{[]string{"a=1; " + api.SessionCookie + "=secret; b=2"}, []string{"a=1; b=2"}},
		{[]string{api.SessionCookie + "=secret"}, nil},
		{[]string{"theme=dark", api.SessionCookie + "=secret"}, []string{"theme=dark"}},
		{[]string{"a=1"}, []string{"a=1"}},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		for _, v := range c.in {
			req.Header.Add("Cookie", v)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		if len(got) != len(c.want) || (len(got) > 0 && got[0] != c.want[0]) {
			t.Errorf("cookies %q reached the service as %q, want %q", c.in, got, c.want)
		}
		if len(req.Header.Values("Cookie")) != len(c.in) {
			t.Errorf("the caller's request was changed")
		}
	}
}
