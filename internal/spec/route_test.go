package spec

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// service writes a service block on listen with the given extra lines.
func service(name, listen string, extra ...string) string {
	return fmt.Sprintf("service %q {\n  image  = image.web\n  port   = 8080\n  listen = %q\n  %s\n}\n", name, listen, strings.Join(extra, "\n  "))
}

func parseServices(t *testing.T, opts Options, blocks ...string) (*Config, hcl.Diagnostics) {
	t.Helper()
	src := "image \"web\" {\n  from = \"scratch\"\n}\n" + strings.Join(blocks, "")
	return Parse("/srv/app/kiln.hcl", []byte(src), opts)
}

func TestRouteSettingsDecode(t *testing.T) {
	cfg, diags := parseServices(t, testOpts,
		service("site", "127.0.0.1:443", `hosts = ["Bücher.example", "WWW.Example.com.", "*.Shop.example.com"]`, `path = "/api//v1/"`,
			`strip_path = false`, `drain_timeout = "2m"`, `access_log = true`,
			`tls {
    certificate = "certs/web.pem"
    key         = "/etc/ssl/web.key"
    hsts        = "365d"
  }`),
		service("plain", "127.0.0.1:8080"),
		service("auto", "127.0.0.1:8443", `hosts = ["auto.example.com"]`, `drain_timeout = "0s"`,
			`tls {
    acme       = true
    acme_email = "ops@example.com"
    acme_roots = "pebble.minica.pem"
    hsts       = "1h30m"
  }`),
		service("quiet", "127.0.0.2:443", `tls {
    certificate = "c.pem"
    key         = "c.key"
    redirect    = false
  }`),
	)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got := map[string]*Service{}
	for _, s := range cfg.Services {
		s.DeclRange, s.Image = hcl.Range{}, ImageRef{}
		got[s.Name] = s
	}
	want := map[string]*Service{
		"site": {Hosts: []string{"xn--bcher-kva.example", "www.example.com", "*.shop.example.com"}, Path: "/api/v1",
			DrainTimeout: 2 * time.Minute, AccessLog: true, Listen: "127.0.0.1:443",
			TLS: &TLS{CertFile: "/srv/app/certs/web.pem", KeyFile: "/etc/ssl/web.key", RedirectHTTP: "127.0.0.1:80", HSTS: 365 * 24 * time.Hour}},
		"plain": {Path: "/", StripPath: true, DrainTimeout: DefaultDrainTimeout, Listen: "127.0.0.1:8080"},
		"auto": {Hosts: []string{"auto.example.com"}, Path: "/", StripPath: true, DrainTimeout: 0, Listen: "127.0.0.1:8443",
			TLS: &TLS{ACME: true, ACMEEmail: "ops@example.com", ACMEDirectory: DefaultACMEDirectory, ACMERoots: "/srv/app/pebble.minica.pem", HSTS: 90 * time.Minute}},
		"quiet": {Path: "/", StripPath: true, DrainTimeout: DefaultDrainTimeout, Listen: "127.0.0.2:443",
			TLS: &TLS{CertFile: "/srv/app/c.pem", KeyFile: "/srv/app/c.key", NoRedirect: true}},
	}
	for name, w := range want {
		g := got[name]
		gotRoute := Service{Hosts: g.Hosts, Path: g.Path, StripPath: g.StripPath, DrainTimeout: g.DrainTimeout, AccessLog: g.AccessLog, Listen: g.Listen, TLS: g.TLS}
		if diff := cmp.Diff(w, &gotRoute); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// TestSharedListen: services may share a listen address when their routes differ; the
// specs that were errors for sharing one (no hosts, no paths) still are, and so is
// every other pair taking the same host and path.
func TestSharedListen(t *testing.T) {
	const addr = "127.0.0.1:9000"
	tests := []struct {
		name    string
		a, b    []string // extra lines of each service
		wantErr string   // "" when valid
	}{
		{"neither has hosts or a path", nil, nil, `both take every host and the path "/" on 127.0.0.1:9000`},
		{"same host", []string{`hosts = ["a.example.com"]`}, []string{`hosts = ["b.example.com", "A.example.com"]`}, `both take the host "a.example.com"`},
		{"same path, no hosts", []string{`path = "/api"`}, []string{`path = "/api/"`}, `both take every host and the path "/api"`},
		{"same wildcard", []string{`hosts = ["*.example.com"]`}, []string{`hosts = ["*.EXAMPLE.com"]`}, `both take the host "*.example.com"`},
		{"different hosts", []string{`hosts = ["a.example.com"]`}, []string{`hosts = ["b.example.com"]`}, ""},
		{"different paths", nil, []string{`path = "/admin"`}, ""},
		{"nested paths", []string{`path = "/api"`}, []string{`path = "/api/v2"`}, ""},
		{"a host and every host", nil, []string{`hosts = ["admin.example.com"]`}, ""},
		{"a wildcard and a name under it", []string{`hosts = ["*.example.com"]`}, []string{`hosts = ["www.example.com"]`}, ""},
		{"same host, other paths", []string{`hosts = ["a.example.com"]`}, []string{`hosts = ["a.example.com"]`, `path = "/b"`}, ""},
		{"HTTPS and HTTP", []string{`hosts = ["a.example.com"]`, `tls {
    certificate = "a.pem"
    key         = "a.key"
  }`}, []string{`hosts = ["b.example.com"]`}, "one address serves HTTPS or plain HTTP, not both"},
		{"one certificate a host", []string{`hosts = ["a.example.com"]`, `tls {
    certificate = "a.pem"
    key         = "a.key"
  }`}, []string{`hosts = ["a.example.com"]`, `path = "/b"`, `tls {
    acme = true
  }`}, `with different certificates (/srv/app/a.pem for "a", ACME for "b")`},
		{"one certificate a host, one for every host", []string{`tls {
    certificate = "a.pem"
    key         = "a.key"
  }`}, []string{`path = "/b"`, `tls {
    certificate = "a.pem"
    key         = "b.key"
  }`}, `both take every host, with different certificates (the key /srv/app/a.key for "a", the key /srv/app/b.key for "b")`},
		{"certificates of other hosts", []string{`tls {
    certificate = "a.pem"
    key         = "a.key"
  }`}, []string{`hosts = ["b.example.com"]`, `tls {
    acme = true
  }`}, ""},
		{"two ACME accounts", []string{`hosts = ["a.example.com"]`, `tls {
    acme = true
  }`}, []string{`hosts = ["b.example.com"]`, `tls {
    acme           = true
    acme_directory = "https://127.0.0.1:14000/dir"
  }`}, "which has one ACME account, and their acme_directory differ"},
		{"redirects differ", []string{`hosts = ["a.example.com"]`, `tls {
    acme = true
  }`}, []string{`hosts = ["b.example.com"]`, `tls {
    acme     = true
    redirect = false
  }`}, "only one has redirect = false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := parseServices(t, testOpts, service("a", addr, tt.a...), service("b", addr, tt.b...))
			if tt.wantErr == "" {
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				return
			}
			if len(diags.Errs()) != 1 || !strings.Contains(diags.Error(), tt.wantErr) {
				t.Fatalf("got %v, want one error containing %q", diags, tt.wantErr)
			}
			d := diags[0]
			// At b, naming where both are declared.
			if d.Subject == nil || d.Subject.Start.Line < 10 || !strings.Contains(d.Detail, `"a" (/srv/app/kiln.hcl:4)`) || !strings.Contains(d.Detail, `"b" (/srv/app/kiln.hcl:`) {
				t.Errorf("subject %v, detail %q: want it at service b, with both places", d.Subject, d.Detail)
			}
		})
	}
}

func TestRedirectAddress(t *testing.T) {
	tlsBlock := func(extra string) string {
		return "tls {\n    certificate = \"c.pem\"\n    key = \"c.key\"\n    " + extra + "\n  }"
	}
	tests := []struct {
		name    string
		blocks  []string
		wantErr string
	}{
		{"default on port 80 of a 443 listener, taken", []string{service("site", ":443", tlsBlock("")), service("old", "127.0.0.1:80")},
			`redirects plain HTTP from 0.0.0.0:80 to HTTPS`},
		{"no default off 443", []string{service("site", ":8443", tlsBlock("")), service("old", "0.0.0.0:80")}, ""},
		{"redirect = false leaves it free", []string{service("site", ":443", tlsBlock("redirect = false")), service("old", "0.0.0.0:80")}, ""},
		{"another address leaves it free", []string{service("site", ":443", tlsBlock(`redirect_http = "127.0.0.1:8080"`)), service("old", "0.0.0.0:80")}, ""},
		{"shared by the services of one address", []string{service("a", ":443", `hosts = ["a.example.com"]`, tlsBlock("")), service("b", ":443", `hosts = ["b.example.com"]`, tlsBlock(""))}, ""},
		{"shared by two addresses", []string{service("a", "127.0.0.1:443", tlsBlock("")), service("b", "127.0.0.2:443", tlsBlock(`redirect_http = "127.0.0.1:80"`))},
			"a redirect address serves one"},
		{"its own listen address", []string{service("a", "127.0.0.1:8443", tlsBlock(`redirect_http = "127.0.0.1:8443"`))}, "is the service's listen address"},
		{"port 0", []string{service("a", "127.0.0.1:8443", tlsBlock(`redirect_http = "127.0.0.1:0"`))}, "not a host:port address with a port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := parseServices(t, testOpts, tt.blocks...)
			if tt.wantErr == "" {
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				return
			}
			if len(diags.Errs()) != 1 || !strings.Contains(diags.Error(), tt.wantErr) {
				t.Fatalf("got %v, want one error containing %q", diags, tt.wantErr)
			}
		})
	}
}

// TestRouteConflictsOfAPIValues checks RouteConflicts as the daemon calls it, on
// services that come from no spec file: the same rules, no places.
func TestRouteConflictsOfAPIValues(t *testing.T) {
	running := []*Service{
		{Name: "web", Listen: "0.0.0.0:443", Hosts: []string{"example.com"}, TLS: &TLS{ACME: true, ACMEDirectory: DefaultACMEDirectory, RedirectHTTP: "0.0.0.0:80"}},
		{Name: "api", Listen: "0.0.0.0:443", Hosts: []string{"example.com"}, Path: "/api", TLS: &TLS{ACME: true, ACMEDirectory: DefaultACMEDirectory, RedirectHTTP: "0.0.0.0:80"}},
	}
	if c := RouteConflicts(running); len(c) != 0 {
		t.Fatalf("conflicts among valid services: %v", c)
	}
	applied := &Service{Name: "admin", Listen: "0.0.0.0:443", Hosts: []string{"Example.com"}, Path: "", TLS: &TLS{ACME: true, ACMEDirectory: DefaultACMEDirectory, RedirectHTTP: "0.0.0.0:80"}}
	got := RouteConflicts(append(running, applied))
	want := []Conflict{{Service: "admin", Other: "web", Attribute: "hosts", Summary: "Duplicate route",
		Detail: `Services "web" and "admin" both take the host "example.com" and the path "/" on 0.0.0.0:443, so their front door could not tell which one a request is for. Give them different hosts (hosts = ["admin.example.com"]) or paths (path = "/admin"), or give one of them another listen address.`}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got[0].Error(), "Duplicate route: Services \"web\"") {
		t.Errorf("Error() = %q", got[0].Error())
	}
	plain := &Service{Name: "metrics", Listen: "0.0.0.0:80"}
	if c := RouteConflicts(append(running, plain)); len(c) != 2 || c[0].Service != "web" || c[1].Service != "api" || c[0].Attribute != "tls.redirect_http" {
		t.Errorf("a plain door on the redirect address: %v", c)
	}
	bad := &Service{Name: "bad", Listen: "nowhere"}
	if c := RouteConflicts([]*Service{bad, bad}); len(c) != 0 {
		t.Errorf("services with invalid listen addresses are ValidateService's: %v", c)
	}
}

func TestNormalHost(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "Example.COM", want: "example.com"},
		{in: "example.com.", want: "example.com"},
		{in: "bücher.de", want: "xn--bcher-kva.de"},
		{in: "*.Example.com", want: "*.example.com"},
		{in: "localhost", want: "localhost"},
		{in: "10.0.0.1", want: "10.0.0.1"},
		{in: "", err: "empty"},
		{in: "https://example.com", err: "no scheme"},
		{in: "example.com/api", err: "no path"},
		{in: "example.com:443", err: "no port"},
		{in: "::1", err: "IPv6"},
		{in: "[::1]", err: "IPv6"},
		{in: "a.*.com", err: "wildcard"},
		{in: "*example.com", err: "wildcard"},
		{in: "my_host.example", err: "not a valid host name"},
		{in: "-a.example", err: "not a valid host name"},
		{in: "a..example", err: "1 to 63 characters"},
		{in: strings.Repeat("a", 64) + ".example", err: "1 to 63 characters"},
		{in: strings.Repeat("abcdefghi.", 26) + "com", err: "at most 253"},
	}
	for _, tt := range tests {
		got, err := NormalHost(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("NormalHost(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("NormalHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestValidateRouteOfAPIValues: ValidateService takes the API's zero values (a path of
// "" is "/") and refuses a path that is not normalised, which only an API client can
// send.
func TestValidateRouteOfAPIValues(t *testing.T) {
	base := Service{Name: "web", Replicas: 1, Port: 8080, Listen: "127.0.0.1:8080", Health: DefaultHealth, Update: DefaultUpdate}
	if p := ValidateService(&base); len(p) != 0 {
		t.Fatalf("zero route settings: %v", p)
	}
	for _, tt := range []struct {
		mutate func(*Service)
		attr   string
		detail string
	}{
		{func(s *Service) { s.Path = "/api/" }, "path", `write it as "/api"`},
		{func(s *Service) { s.Path = "/a b" }, "path", "only letters"},
		{func(s *Service) { s.Path = "/a%2F" }, "path", "unescaped"},
		{func(s *Service) { s.Path = "/a?b=1" }, "path", "no query"},
		{func(s *Service) { s.DrainTimeout = -time.Second }, "drain_timeout", "from 0s"},
		{func(s *Service) { s.TLS = &TLS{} }, "tls", "Give certificate"},
		{func(s *Service) { s.TLS = &TLS{CertFile: "c.pem", KeyFile: "/k"} }, "tls.certificate", "must be an absolute path"},
		{func(s *Service) { s.TLS = &TLS{ACME: true, ACMEDirectory: DefaultACMEDirectory} }, "tls.acme", "needs the service's hosts"},
		{func(s *Service) {
			s.Hosts = []string{"a.example.com"}
			s.TLS = &TLS{ACME: true}
		}, "tls.acme_directory", "directory URL"},
		{func(s *Service) { s.TLS = &TLS{CertFile: "/c", KeyFile: "/k", HSTS: -1} }, "tls.hsts", "negative"},
	} {
		s := base
		tt.mutate(&s)
		p := ValidateService(&s)
		if len(p) != 1 || p[0].Attribute != tt.attr || !strings.Contains(p[0].Detail, tt.detail) {
			t.Errorf("got %v, want one problem of %s containing %q", p, tt.attr, tt.detail)
		}
	}
}

// TestTLSFilesConfined: a confined spec's certificate, key and ACME roots stay inside
// its directory, as its other files do.
func TestTLSFilesConfined(t *testing.T) {
	dir := t.TempDir()
	opts := testOpts
	opts.Confine = true
	// Each block valid but for the one path outside.
	blocks := map[string]string{
		"certificate": "certificate = %q\n    key = \"web.key\"",
		"key":         "certificate = \"web.pem\"\n    key = %q",
		"acme_roots":  "acme = true\n    acme_roots = %q",
	}
	for attr, block := range blocks {
		for _, p := range []string{"../outside.pem", "/etc/ssl/private/web.key"} {
			src := "image \"web\" {\n  from = \"scratch\"\n}\n" + service("web", "127.0.0.1:8443", `hosts = ["a.example.com"]`,
				"tls {\n    "+fmt.Sprintf(block, p)+"\n  }")
			_, diags := Parse(dir+"/kiln.hcl", []byte(src), opts)
			if len(diags) != 1 || !strings.Contains(diags[0].Detail, outsideCheckout) {
				t.Errorf("%s = %q: got %v, want it refused, and nothing else", attr, p, diags)
			}
		}
	}
	src := "image \"web\" {\n  from = \"scratch\"\n}\n" + service("web", "127.0.0.1:8443", "tls {\n    certificate = \"certs/web.pem\"\n    key = \"certs/web.key\"\n  }")
	cfg, diags := Parse(dir+"/kiln.hcl", []byte(src), opts)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := cfg.Services[0].TLS.KeyFile; got != dir+"/certs/web.key" {
		t.Errorf("key file %q", got)
	}
}
