package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Door is the part of a service's settings its front door acts on beyond its listen
// address: the fields of api.Service of the same names, with their meanings (see
// there). DoorTLS has api.TLS's fields in its order, so that a caller converts one
// into the other (plan.DoorTLS(*svc.TLS)); plan imports no api.
type Door struct {
	Hosts        []string
	Path         string // "" is "/"
	StripPath    bool
	DrainTimeout time.Duration // 0 is DefaultDrainTimeout, negative none
	AccessLog    bool
	TLS          *DoorTLS
}

// DoorTLS is api.TLS.
type DoorTLS struct {
	CertFile      string
	KeyFile       string
	ACME          bool
	ACMEEmail     string
	ACMEDirectory string
	ACMERoots     string
	RedirectHTTP  string
	NoRedirect    bool
	HSTS          time.Duration
}

// DefaultDrainTimeout is the drain a zero Door.DrainTimeout means (api's).
const DefaultDrainTimeout = 30 * time.Second

// DoorChanges lists how new differs from old in what the door does, as Desired.Settings
// holds changes ("path / → /api"), each named as the spec writes it: changing them
// replaces no server, yet they are changes. Values that mean the same are equal: a
// Path of "" and "/", a DrainTimeout of 0 and 30s, StripPath with the path "/", the
// order of Hosts. A tls block added or removed is one change; a changed one, one
// change per setting. Empty when nothing changes.
func DoorChanges(old, new Door) []string {
	var out []string
	add := func(name string, o, n any) {
		if o != n {
			out = append(out, fmt.Sprintf("%s %v → %v", name, o, n))
		}
	}
	add("hosts", hostList(old.Hosts), hostList(new.Hosts))
	op, np := routePath(old.Path), routePath(new.Path)
	add("path", op, np)
	if op != "/" && np != "/" {
		add("strip_path", old.StripPath, new.StripPath)
	}
	add("drain_timeout", drain(old.DrainTimeout), drain(new.DrainTimeout))
	add("access_log", old.AccessLog, new.AccessLog)
	ot, nt := old.TLS, new.TLS
	switch {
	case ot == nil || nt == nil:
		add("tls", certificate(ot), certificate(nt))
	default:
		add("tls certificate", quoted(ot.CertFile), quoted(nt.CertFile))
		add("tls key", quoted(ot.KeyFile), quoted(nt.KeyFile))
		add("tls acme", ot.ACME, nt.ACME)
		add("tls acme_email", quoted(ot.ACMEEmail), quoted(nt.ACMEEmail))
		add("tls acme_directory", quoted(ot.ACMEDirectory), quoted(nt.ACMEDirectory))
		add("tls acme_roots", quoted(ot.ACMERoots), quoted(nt.ACMERoots))
		add("tls redirect", !ot.NoRedirect, !nt.NoRedirect)
		add("tls redirect_http", orNone(ot.RedirectHTTP), orNone(nt.RedirectHTTP))
		add("tls hsts", hsts(ot.HSTS), hsts(nt.HSTS))
	}
	return out
}

func hostList(hosts []string) string {
	if len(hosts) == 0 {
		return "(every host)"
	}
	sorted := append([]string(nil), hosts...)
	for i := range sorted {
		sorted[i] = strings.ToLower(sorted[i])
	}
	slices.Sort(sorted)
	return strings.Join(sorted, ", ")
}

func routePath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func drain(d time.Duration) string {
	switch {
	case d == 0:
		return DefaultDrainTimeout.String()
	case d < 0:
		return "0s"
	}
	return d.String()
}

// certificate is the one-line state of a door's TLS: off, or where its certificate
// comes from.
func certificate(t *DoorTLS) string {
	switch {
	case t == nil:
		return "off"
	case t.ACME:
		return "acme " + t.ACMEDirectory
	}
	return "certificate " + t.CertFile
}

func quoted(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func hsts(d time.Duration) string {
	if d <= 0 {
		return "off"
	}
	return d.String()
}
