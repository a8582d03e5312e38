package dashboard

import (
	"net/url"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
)

func TestMentionsAny(t *testing.T) {
	for line, want := range map[string]bool{
		`kiln-web-1  2025/03/01 12:00:00 INFO GET /healthz`:       true,
		`10.0.0.1 - - "GET /healthz HTTP/1.1" 200 3`:              true,
		`level=INFO msg=request path=/healthz?probe=1 status=200`: true,
		`GET /healthz2`:                 false,
		`GET /api/healthz`:              false,
		`GET /`:                         false,
		`listening addr=:8080`:          false,
		`GET /health then GET /healthz`: true,
	} {
		if got := mentionsAny(line, []string{"/healthz"}); got != want {
			t.Errorf("mentionsAny(%q, /healthz) = %v, want %v", line, got, want)
		}
	}
	// A service whose health check is "/" hides requests for / only.
	for line, want := range map[string]bool{`"GET / HTTP/1.1" 200`: true, `GET /static/a.css`: false, `INFO GET /`: true} {
		if got := mentionsAny(line, []string{"/"}); got != want {
			t.Errorf("mentionsAny(%q, /) = %v, want %v", line, got, want)
		}
	}
	if p := healthPaths(api.ServiceStatus{HealthPath: "/ping"}); len(p) != 1 || p[0] != "/ping" {
		t.Errorf("health paths of a service checked on /ping: %v", p)
	}
}

// TestShowChecks: hidden by default; the form's unchecked box shows them.
func TestShowChecks(t *testing.T) {
	for q, want := range map[string]bool{
		"":                                      false,
		"health_checks=show&health_checks=hide": false, // the box checked
		"health_checks=show":                    true,  // the box unchecked
		"sort=age":                              false,
	} {
		v, _ := url.ParseQuery(q)
		if got := showChecks(v); got != want {
			t.Errorf("showChecks(%q) = %v, want %v", q, got, want)
		}
	}
}

// TestDegradedCause: a degraded service is red on the fleet page with its cause, and
// its page opens with a banner saying why.
func TestDegradedCause(t *testing.T) {
	d := New(Options{AdminToken: "a"})
	cause := "server kiln-web-1 exited with code 3: panic: no config"
	ss := api.ServiceStatus{Name: "web", State: "degraded", Cause: cause, Replicas: 2}
	render := func(page string, data any) string {
		var b strings.Builder
		if err := d.pages[page].ExecuteTemplate(&b, "main", pageData{view: view{Template: page, Data: data}, Session: &session{}}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	u, _ := url.Parse("/")
	fleet := render("fleet", fleetData{URL: u, Rows: []fleetRow{{ServiceStatus: ss, Cause: cause}}})
	if !strings.Contains(fleet, `<span class="badge bad">degraded</span>`) || !strings.Contains(fleet, `<span class="cause bad">`+cause+`</span>`) {
		t.Errorf("the fleet page does not show the degraded service in red with its cause:\n%s", fleet)
	}
	u, _ = url.Parse("/services/web")
	page := render("service", serviceData{URL: u, Name: "web", Status: &ss, Cause: cause, HideChecks: true})
	if !strings.Contains(page, `<div class="error" id="cause" role="status">`) || !strings.Contains(page, cause) {
		t.Errorf("the service page has no banner with the cause:\n%s", page)
	}
	ss.State, ss.Cause = "healthy", ""
	if page := render("service", serviceData{URL: u, Name: "web", Status: &ss}); strings.Contains(page, `id="cause"`) {
		t.Errorf("a healthy service's page has a cause banner")
	}
}
