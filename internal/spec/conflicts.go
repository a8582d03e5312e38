package spec

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// Conflict is a rule two services break together. Service is the one it is reported
// at (kiln validate shows its Attribute, named as Problem names it: the later of the
// two in the order given, or the one whose redirect_http is in the way), Other the
// other one; Summary and Detail are what kiln validate says.
type Conflict struct {
	Service   string
	Other     string
	Attribute string
	Summary   string
	Detail    string
}

// Error is the conflict as an API client is told it.
func (c Conflict) Error() string { return c.Summary + ": " + c.Detail }

// RouteConflicts checks the rules on front doors that only a set of services can
// break, and returns the conflicts in the order given, each rule reported once for a
// service (with the first other service it conflicts with); none when the doors can
// serve every service. The daemon checks with it the services it is to run together
// (those applied and those it keeps), as the spec checks its own. Services with an
// invalid listen address are left out (ValidateService reports them). The rules:
//
//   - Services with the same listen address share one front door. Two of them may not
//     take the same path prefix for the same host (or both for every host: neither
//     has hosts); a wildcard and a name under it are different hosts (the name wins).
//   - The services of one address all serve HTTPS (a tls block) or none does. Of
//     those serving HTTPS, those that take the same host (or every host) use the same
//     certificate (the same files, or ACME), since a TLS handshake is answered before
//     any path is known; those using ACME have the same account (acme_email,
//     acme_directory, acme_roots); and all agree on redirect, which acts on the
//     address.
//   - Two addresses with the same port overlap when their hosts are equal or one is
//     unspecified (0.0.0.0, ::): the second door could not listen. Sharing a door takes
//     the same address, as written.
//   - A redirect_http address is no service's listen address (it would be a second
//     door on it), and serves one HTTPS address: services naming the same one have the
//     same listen address.
func RouteConflicts(services []*Service) []Conflict {
	var out []Conflict
	// A listen address on port 0 is a door of its own on a port picked for it.
	valid := slices.DeleteFunc(slices.Clone(services), func(s *Service) bool {
		return !validListen(s.Listen) || strings.HasSuffix(s.Listen, ":0")
	})
	// first is the first service of each address, firstTLS the first with a tls block:
	// which of HTTP and HTTPS an address serves, and whether it redirects, is theirs,
	// so that a service that differs is told so once.
	first, firstTLS := map[string]*Service{}, map[string]*Service{}
	for _, s := range valid {
		if first[s.Listen] == nil {
			first[s.Listen] = s
		}
		if firstTLS[s.Listen] == nil && s.TLS != nil {
			firstTLS[s.Listen] = s
		}
	}
	for j, b := range valid {
		said := map[string]bool{} // the rules reported for b, once each
		report := func(c Conflict) {
			if !said[c.Summary] {
				said[c.Summary] = true
				out = append(out, c)
			}
		}
		for i, a := range valid {
			if i == j {
				continue
			}
			if r := redirectOf(b); r != "" && (a.Listen == r || listensOverlap(a.Listen, r)) {
				report(conflict(b, a, "tls.redirect_http", "Redirect address in use", "Service %s redirects plain HTTP from %s to HTTPS (redirect_http, by default port 80 when the listen port is 443), and %s listens on %s: an address is one service's front door or a redirect, not both. Set redirect_http to another address, or redirect = false.",
					declared(b), r, declared(a), a.Listen))
			}
			if i > j {
				continue
			}
			if a.Listen != b.Listen {
				if listensOverlap(a.Listen, b.Listen) {
					report(conflict(b, a, "listen", "Overlapping listen addresses", "Service %s listens on %s and %s on %s: a door on an unspecified address (0.0.0.0 or ::) takes its port on every address, so the two doors could not both listen. Give both the same listen address to share one door, or use another port.",
						declared(b), b.Listen, declared(a), a.Listen))
				}
				if r, ra := redirectOf(b), redirectOf(a); r != "" && ra != "" && (ra == r || listensOverlap(ra, r)) {
					report(conflict(b, a, "tls.redirect_http", "Redirect address shared", "Services %s and %s both redirect from %s, to different HTTPS addresses (%s and %s): a redirect address serves one. Set redirect_http to another address for one of them, or redirect = false.",
						declared(a), declared(b), r, a.Listen, b.Listen))
				}
				continue
			}
			if c, ok := routeConflict(a, b); ok {
				report(c)
			}
			if a == first[b.Listen] && (a.TLS == nil) != (b.TLS == nil) {
				attr, https, plain := "listen", a, b
				if b.TLS != nil {
					attr, https, plain = "tls", b, a
				}
				report(conflict(b, a, attr, "Mixed HTTP and HTTPS on one address", "Services %s and %s share the front door on %s, and %s has a tls block while %s has none: one address serves HTTPS or plain HTTP, not both. Give both a tls block, or neither, or give one another listen address.",
					declared(a), declared(b), b.Listen, quote(https), quote(plain)))
			}
			if a.TLS != nil && b.TLS != nil {
				for _, c := range tlsConflicts(a, b, a == firstTLS[b.Listen]) {
					report(c)
				}
			}
		}
	}
	return out
}

func conflict(s, other *Service, attribute, summary, format string, args ...any) Conflict {
	return Conflict{s.Name, other.Name, attribute, summary, fmt.Sprintf(format, args...)}
}

// routeConflict reports two services of one address that take the same host and path.
func routeConflict(a, b *Service) (Conflict, bool) {
	if routePath(a) != routePath(b) {
		return Conflict{}, false
	}
	host, ok := sharedHost(a, b)
	if !ok {
		return Conflict{}, false
	}
	what := fmt.Sprintf("the host %q", host)
	attr := "hosts"
	if host == "" {
		what, attr = "every host", "listen"
	}
	fix := fmt.Sprintf("different hosts (hosts = [\"%s.example.com\"]) or paths (path = \"/%s\")", b.Name, b.Name)
	return conflict(b, a, attr, "Duplicate route",
		"Services %s and %s both take %s and the path %q on %s, so their front door could not tell which one a request is for. Give them %s, or give one of them another listen address.",
		declared(a), declared(b), what, routePath(b), b.Listen, fix), true
}

// tlsConflicts reports how two HTTPS services of one address disagree on their
// certificates, ACME accounts or (when a is the address's first, whose redirect the
// others must have) redirects.
func tlsConflicts(a, b *Service, first bool) []Conflict {
	var out []Conflict
	ta, tb := a.TLS, b.TLS
	if host, ok := sharedHost(a, b); ok && (ta.ACME != tb.ACME || !ta.ACME && (ta.CertFile != tb.CertFile || ta.KeyFile != tb.KeyFile)) {
		what := fmt.Sprintf("the host %q", host)
		if host == "" {
			what = "every host"
		}
		out = append(out, conflict(b, a, "tls", "Two certificates for one host", "Services %s and %s share the front door on %s and both take %s, with different certificates (%s for %q, %s for %q): a TLS handshake is answered before the path of a request is known, so one host has one certificate. Give them the same certificate, or different hosts.",
			declared(a), declared(b), b.Listen, what, certificateOf(ta, tb), a.Name, certificateOf(tb, ta), b.Name))
	}
	if ta.ACME && tb.ACME {
		for _, f := range []struct{ attr, a, b string }{
			{"tls.acme_directory", ta.ACMEDirectory, tb.ACMEDirectory},
			{"tls.acme_email", ta.ACMEEmail, tb.ACMEEmail},
			{"tls.acme_roots", ta.ACMERoots, tb.ACMERoots},
		} {
			if f.a != f.b {
				out = append(out, conflict(b, a, f.attr, "Two ACME accounts on one address", "Services %s and %s share the front door on %s, which has one ACME account, and their %s differ (%q and %q): give them the same.",
					declared(a), declared(b), b.Listen, strings.TrimPrefix(f.attr, "tls."), f.a, f.b))
				break
			}
		}
	}
	if first && ta.NoRedirect != tb.NoRedirect {
		out = append(out, conflict(b, a, "tls.redirect", "Redirect settings differ on one address", "Services %s and %s share the front door on %s, and only one has redirect = false: redirecting plain HTTP acts on the whole address. Give both the same redirect.",
			declared(a), declared(b), b.Listen))
	}
	return out
}

// sharedHost returns a host both services take ("" when both take every host).
func sharedHost(a, b *Service) (string, bool) {
	ha, hb := hostClaims(a), hostClaims(b)
	for _, h := range ha {
		if slices.Contains(hb, h) {
			return h, true
		}
	}
	return "", false
}

// hostClaims are the hosts a service takes, normalised; [""] when it takes every
// host.
func hostClaims(s *Service) []string {
	if len(s.Hosts) == 0 {
		return []string{""}
	}
	out := make([]string, 0, len(s.Hosts))
	for _, h := range s.Hosts {
		if n, err := NormalHost(h); err == nil {
			h = n
		}
		out = append(out, h)
	}
	return out
}

// certificateOf says where t's certificate comes from, as it differs from other's:
// "ACME", its certificate file, or its key file.
func certificateOf(t, other *TLS) string {
	switch {
	case t.ACME:
		return "ACME"
	case t.CertFile == other.CertFile && !other.ACME:
		return "the key " + t.KeyFile
	}
	return t.CertFile
}

// redirectOf is the plain-HTTP address a service redirects from, "" for none.
func redirectOf(s *Service) string {
	if s.TLS == nil || s.TLS.NoRedirect || !validListen(s.TLS.RedirectHTTP) {
		return ""
	}
	return s.TLS.RedirectHTTP
}

// listensOverlap reports whether two different listen addresses take the same port
// on some address: the same port (not 0) and the same host, or either unspecified.
func listensOverlap(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	return ha == hb || unspecified(ha) || unspecified(hb)
}

func unspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// declared names a service with where it is declared, when it is known:
// `"web" (kiln.hcl:12)`.
func declared(s *Service) string {
	if s.DeclRange.Filename == "" {
		return quote(s)
	}
	return fmt.Sprintf("%q (%s:%d)", s.Name, s.DeclRange.Filename, s.DeclRange.Start.Line)
}

func quote(s *Service) string { return fmt.Sprintf("%q", s.Name) }
