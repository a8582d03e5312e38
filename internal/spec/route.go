package spec

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/net/idna"
)

// TLS is a service's tls block: its front door serves HTTPS with the certificate and
// key in CertFile and KeyFile, or with certificates an ACME CA issues for the
// service's hosts. Its fields are api.TLS's, with the same zero values.
type TLS struct {
	CertFile, KeyFile string // absolute paths, read by the door
	ACME              bool
	ACMEEmail         string // the contact given to the CA; "" gives none
	ACMEDirectory     string // the CA's directory URL: DefaultACMEDirectory unless set
	ACMERoots         string // absolute path of a PEM file of the CAs trusted for the CA's own HTTPS
	// RedirectHTTP is a plain-HTTP address whose requests are redirected to HTTPS on
	// the service's listen address: redirect_http, else the listen host's port 80
	// when the listen port is 443, else none.
	RedirectHTTP string
	// NoRedirect is redirect = false: plain HTTP is redirected neither on the listen
	// address nor from another.
	NoRedirect bool
	// HSTS, when positive, is the max-age of the Strict-Transport-Security header.
	HSTS time.Duration
}

// Defaults and bounds of a service's front-door settings.
const (
	DefaultDrainTimeout = 30 * time.Second
	MaxDrainTimeout     = 10 * time.Minute
	// DefaultACMEDirectory is Let's Encrypt's production CA.
	DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"
)

var tlsSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "certificate"}, {Name: "key"}, {Name: "acme"}, {Name: "acme_email"}, {Name: "acme_directory"},
		{Name: "acme_roots"}, {Name: "redirect_http"}, {Name: "redirect"}, {Name: "hsts"},
	},
}

// route decodes the attributes of a service block that say which requests its front
// door sends it, and how: hosts, path, strip_path, drain_timeout and access_log. A
// value that cannot be normalised is kept as written, for ValidateService to report.
func (d *decoder) route(a hcl.Attributes, s *Service) {
	for _, h := range d.strList(a, "hosts") {
		if n, err := NormalHost(h); err == nil {
			h = n
		}
		s.Hosts = append(s.Hosts, h)
	}
	if p, ok := d.str(a, "path"); ok {
		s.Path = p
		if checkPath(p) == nil {
			s.Path = path.Clean(p)
		}
	}
	if _, ok := a["strip_path"]; ok {
		s.StripPath = d.boolean(a, "strip_path")
	}
	if v, ok := d.duration(a, "drain_timeout", 0); ok {
		s.DrainTimeout = v
	}
	s.AccessLog = d.boolean(a, "access_log")
}

// tls decodes a tls block. Its files resolve against the spec's directory (and must
// stay inside it when the spec is confined); redirect_http's default is applied once
// the service's listen address is known (defaultRedirect).
func (d *decoder) tls(b *hcl.Block, where map[string]hcl.Range) *TLS {
	content, diags := b.Body.Content(tlsSchema)
	d.add(diags)
	a := content.Attributes
	note(where, "tls", a)
	t := &TLS{}
	file := func(name, what string) string {
		p, ok := d.str(a, name)
		if !ok {
			return ""
		}
		d.confinePath(a[name].Expr.Range(), what, p) // a path it refuses fails the spec: nothing else to say of it
		return resolve(d.dir, p)
	}
	t.CertFile = file("certificate", "certificate file")
	t.KeyFile = file("key", "key file")
	t.ACMERoots = file("acme_roots", "ACME roots file")
	t.ACME = d.boolean(a, "acme")
	t.ACMEEmail, _ = d.str(a, "acme_email")
	t.ACMEDirectory, _ = d.str(a, "acme_directory")
	if t.ACME && t.ACMEDirectory == "" {
		t.ACMEDirectory = DefaultACMEDirectory
	}
	if v, ok := d.str(a, "redirect_http"); ok {
		t.RedirectHTTP = normalListen(v)
	}
	if _, ok := a["redirect"]; ok {
		t.NoRedirect = !d.boolean(a, "redirect")
	}
	if v, ok := d.str(a, "hsts"); ok {
		hsts, err := parseHSTS(v)
		if err != nil {
			d.errorf(a["hsts"].Expr.Range().Ptr(), "Invalid HSTS max-age", "hsts = %q: write a number of days, like \"365d\", or a duration, like \"8760h\"; \"0s\" sends no header.", v)
		} else {
			t.HSTS = hsts
		}
	}
	return t
}

// defaultRedirect fills in a TLS service's redirect_http when it has none: the listen
// host's port 80 when the listen port is 443.
func defaultRedirect(s *Service) {
	if s.TLS == nil || s.TLS.NoRedirect || s.TLS.RedirectHTTP != "" || !validListen(s.Listen) {
		return
	}
	if host, port, _ := net.SplitHostPort(s.Listen); port == "443" {
		s.TLS.RedirectHTTP = net.JoinHostPort(host, "80")
	}
}

// normalListen is a listen address as kiln keeps it: an empty host is 0.0.0.0. An
// address that is not host:port is returned as written.
func normalListen(v string) string {
	host, port, err := net.SplitHostPort(v)
	if err != nil || !validListen(v) {
		return v
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, port)
}

// parseHSTS reads a number of days ("365d") or a Go duration ("8760h").
func parseHSTS(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, err
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err == nil && v < 0 {
		err = errors.New("negative")
	}
	return v, err
}

// NormalHost returns the host name h as front doors match it: lower case, ASCII (an
// internationalised name in its xn-- form), without a trailing dot; a wildcard keeps
// its leading "*.". It refuses an empty name, a port, a scheme, a path, an IPv6
// address, a wildcard anywhere but the first label, and names that are not DNS names.
func NormalHost(h string) (string, error) {
	switch {
	case h == "":
		return "", errors.New("the host name is empty")
	case strings.Contains(h, "://"):
		return "", errors.New("a host name has no scheme (write \"example.com\", not \"https://example.com\")")
	case strings.ContainsAny(h, "/?#"):
		return "", errors.New("a host name has no path (a service's path prefix is its path attribute)")
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return "", errors.New("a host name has no port (the port is the listen address's)")
	}
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil && ip.To4() == nil {
		return "", errors.New("an IPv6 address cannot be a host: leave hosts out to take every host")
	}
	name, wild := strings.CutPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return "", errors.New("a wildcard stands for one whole label, at the start only: \"*.example.com\"")
	}
	name = strings.TrimSuffix(name, ".")
	a, err := idna.Lookup.ToASCII(name)
	if err != nil {
		return "", fmt.Errorf("not a valid host name: %v", strings.TrimPrefix(err.Error(), "idna: "))
	}
	if len(a) > 253 {
		return "", errors.New("a host name has at most 253 characters")
	}
	for _, label := range strings.Split(a, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("each dot-separated label of a host name has 1 to 63 characters")
		}
	}
	if wild {
		a = "*." + a
	}
	return a, nil
}

// checkPath reports what is wrong with a path prefix, nil if nothing: it starts with
// "/", has no query, fragment, escape or ".." segment, and only the characters a URL
// path may hold as they are.
func checkPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return errors.New("it must start with \"/\", like \"/api\"")
	case strings.ContainsAny(p, "?#"):
		return errors.New("a path prefix has no query or fragment")
	case strings.Contains(p, "%"):
		return errors.New("write the path unescaped, without %-escapes")
	case strings.IndexFunc(p, func(r rune) bool { return !pathChar(r) }) >= 0:
		return errors.New("a path prefix holds only letters, digits and -._~!$&'()*+,;=:@/")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return errors.New("a path prefix has no \"..\" segment")
		}
	}
	return nil
}

// pathChar reports whether r may stand unescaped in a URL path (RFC 3986's pchar and
// "/").
func pathChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:@/", r)
}

// routePath is a service's path prefix, "" read as "/".
func routePath(s *Service) string {
	if s.Path == "" {
		return "/"
	}
	return s.Path
}

// validateRoute is ValidateService's part for the front door's settings.
func validateRoute(s *Service) []Problem {
	var out []Problem
	add := func(attr, summary, format string, args ...any) {
		out = append(out, Problem{attr, summary, fmt.Sprintf(format, args...)})
	}
	seen := map[string]bool{}
	for _, h := range s.Hosts {
		n, err := NormalHost(h)
		switch {
		case err != nil:
			add("hosts", "Invalid host", "hosts: %q: %s.", h, err)
		case seen[n]:
			add("hosts", "Duplicate host", "hosts has %q twice (host names are compared in lower case, without a trailing dot).", n)
		}
		seen[n] = true
	}
	if s.Path != "" {
		if err := checkPath(s.Path); err != nil {
			add("path", "Invalid path", "path = %q: %s.", s.Path, err)
		} else if c := path.Clean(s.Path); c != s.Path {
			add("path", "Invalid path", "path = %q: write it as %q.", s.Path, c)
		}
	}
	if s.DrainTimeout < 0 || s.DrainTimeout > MaxDrainTimeout {
		add("drain_timeout", "Invalid drain timeout", "drain_timeout = %s: write a duration from 0s (no wait) to 10m.", s.DrainTimeout)
	}
	if s.TLS != nil {
		out = append(out, validateTLS(s)...)
	}
	return out
}

func validateTLS(s *Service) []Problem {
	var out []Problem
	add := func(attr, summary, format string, args ...any) {
		out = append(out, Problem{attr, summary, fmt.Sprintf(format, args...)})
	}
	t := s.TLS
	files := t.CertFile != "" || t.KeyFile != ""
	switch {
	case t.ACME && files:
		add("tls.acme", "Invalid TLS settings", "acme = true and a certificate file are exclusive: either the door has certificates issued by an ACME CA, or it serves the certificate and key files given.")
	case t.ACME:
	case !files:
		add("tls", "Invalid TLS settings", "Give certificate = \"FILE\" and key = \"FILE\" (PEM, relative to the spec), or acme = true with the service's hosts.")
	case t.CertFile == "":
		add("tls.key", "Invalid TLS settings", "A key file needs its certificate: add certificate = \"FILE\".")
	case t.KeyFile == "":
		add("tls.certificate", "Invalid TLS settings", "A certificate needs its key: add key = \"FILE\".")
	}
	for _, f := range []struct{ attr, path string }{{"tls.certificate", t.CertFile}, {"tls.key", t.KeyFile}, {"tls.acme_roots", t.ACMERoots}} {
		if f.path != "" && !strings.HasPrefix(f.path, "/") {
			add(f.attr, "Invalid TLS settings", "%s %q must be an absolute path.", f.attr, f.path)
		}
	}
	if t.ACME {
		if len(s.Hosts) == 0 {
			add("tls.acme", "Invalid TLS settings", "acme = true needs the service's hosts (hosts = [\"example.com\"]): the CA issues a certificate for each host name, and only for names it can check.")
		}
		for _, h := range s.Hosts {
			n, err := NormalHost(h)
			switch {
			case err != nil:
				// reported as an invalid host
			case strings.HasPrefix(n, "*."):
				add("hosts", "Invalid host for ACME", "hosts: %q: an ACME CA issues no wildcard certificate through the challenges a door answers; name each host, or use certificate and key files.", h)
			case net.ParseIP(n) != nil || !strings.Contains(n, "."):
				add("hosts", "Invalid host for ACME", "hosts: %q: an ACME CA issues certificates for public DNS names with a dot, like \"example.com\"; use certificate and key files for this one.", h)
			}
		}
		if t.ACMEEmail != "" {
			if a, err := mail.ParseAddress(t.ACMEEmail); err != nil || a.Address != t.ACMEEmail {
				add("tls.acme_email", "Invalid ACME email", "acme_email = %q: write a bare address, like \"ops@example.com\".", t.ACMEEmail)
			}
		}
		if u, err := url.Parse(t.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
			add("tls.acme_directory", "Invalid ACME directory", "acme_directory = %q: write the CA's directory URL, like %q.", t.ACMEDirectory, DefaultACMEDirectory)
		}
	} else {
		for _, f := range []struct{ attr, value string }{{"tls.acme_email", t.ACMEEmail}, {"tls.acme_directory", t.ACMEDirectory}, {"tls.acme_roots", t.ACMERoots}} {
			if f.value != "" {
				add(f.attr, "Invalid TLS settings", "%s is a setting of ACME: add acme = true, or remove it.", strings.TrimPrefix(f.attr, "tls."))
			}
		}
	}
	if r := t.RedirectHTTP; r != "" {
		_, port, _ := net.SplitHostPort(r)
		switch {
		case t.NoRedirect:
			add("tls.redirect_http", "Invalid TLS settings", "redirect = false turns every redirect off: remove redirect_http, or redirect = false.")
		case !validListen(r) || port == "0":
			add("tls.redirect_http", "Invalid redirect address", "redirect_http = %q is not a host:port address with a port, like \":80\".", r)
		case r == s.Listen:
			add("tls.redirect_http", "Invalid redirect address", "redirect_http = %q is the service's listen address, where the door serves HTTPS (and redirects plain HTTP already).", r)
		}
	}
	if t.HSTS < 0 {
		add("tls.hsts", "Invalid HSTS max-age", "hsts must not be negative.")
	}
	return out
}
