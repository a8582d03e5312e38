package doortls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Site is the TLS of one service: the host names it answers for and where their
// certificate comes from, either a certificate and key file pair (PEM; the
// certificate file may hold the chain after the leaf) or, with ACME, a CA that
// issues one per host.
type Site struct {
	Hosts             []string
	CertFile, KeyFile string
	ACME              bool
}

// Options are a Manager's settings for every site; the zero value serves
// certificate files only.
type Options struct {
	// CacheDir keeps the ACME account key and the certificates issued (made 0700,
	// files 0600). Required for an ACME site.
	CacheDir string
	// ACMEDirectory is the CA's directory URL; Let's Encrypt's production one if empty.
	// Its terms of service are accepted on the operator's behalf, as kamal-proxy's and
	// Caddy's are: configuring an ACME site is the consent.
	ACMEDirectory string
	// ACMEEmail is the contact given to the CA, if any.
	ACMEEmail string
	// ACMERoots are the CAs trusted for the ACME server's own HTTPS; the system's if
	// nil. A test CA such as Pebble needs its own (see LoadRoots).
	ACMERoots *x509.CertPool
	// Logger receives the errors of reloading certificate files; slog.Default() if nil.
	Logger *slog.Logger
}

// ErrUnknownHost is the handshake error for a server name no site answers for (or
// none given). No other site's certificate is served in its place: a client would
// refuse it anyway, and it would tell every scanner the names the door serves.
var ErrUnknownHost = errors.New("no site answers for this server name")

// checkEvery is how often, at most, a site's certificate files are looked at again.
const checkEvery = time.Second

// Manager holds the current set of sites and answers handshakes for all of them.
// It is safe for concurrent use, serves any number of listeners, and starts no
// goroutine of its own (autocert obtains a certificate during the handshake that
// first asks for it, and keeps a timer per certificate to renew it).
type Manager struct {
	opts       Options
	log        *slog.Logger
	acme       *autocert.Manager // nil without CacheDir
	sites      atomic.Pointer[siteSet]
	checkEvery time.Duration
}

// New validates sites as Update does and returns a Manager serving them.
func New(sites []Site, opts Options) (*Manager, error) {
	m := &Manager{opts: opts, log: opts.Logger, checkEvery: checkEvery}
	if m.log == nil {
		m.log = slog.Default()
	}
	if opts.CacheDir != "" {
		if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("doortls: making the certificate cache: %w", err)
		}
		// MkdirAll leaves an existing directory's mode alone; keys live here.
		if err := os.Chmod(opts.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("doortls: certificate cache: %w", err)
		}
		m.acme = m.newAutocert()
	}
	if err := m.Update(sites); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) newAutocert() *autocert.Manager {
	dir := m.opts.ACMEDirectory
	if dir == "" {
		dir = acme.LetsEncryptURL
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: m.opts.ACMERoots, MinVersion: tls.VersionTLS12}
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(m.opts.CacheDir),
		HostPolicy: m.acmePolicy,
		Email:      m.opts.ACMEEmail,
		Client: &acme.Client{
			DirectoryURL: dir,
			HTTPClient:   &http.Client{Transport: tr, Timeout: time.Minute},
		},
	}
}

// Update replaces the set of sites, all at once, for every handshake that starts
// after it returns. It reads and checks every site's files first (present, a key
// that goes with its certificate, a certificate naming each host) and every host
// (one site each); on any error the set in use stays, and the error names the site
// and the file.
func (m *Manager) Update(sites []Site) error {
	set, err := compile(sites, m.acme != nil)
	if err != nil {
		return fmt.Errorf("doortls: %w", err)
	}
	m.sites.Store(set)
	return nil
}

// TLSConfig returns a new tls.Config for a TLS listener of the door: certificates
// from GetCertificate, HTTP/2 and HTTP/1.1, ACME's TLS-ALPN-01 challenges answered on
// the listener itself, TLS 1.2 at least. The caller may change its copy.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: m.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1", acme.ALPNProto},
		MinVersion:     tls.VersionTLS12,
	}
}

// GetCertificate is the tls.Config hook: the certificate of the site whose hosts
// include the handshake's server name (case-insensitive), or an error wrapping
// ErrUnknownHost. For an ACME site it may block while the CA issues one.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := m.sites.Load()
	name, err := normalHost(hello.ServerName)
	if err != nil || name == "" {
		if set.fallback != nil {
			return set.fallback.certificate(m.checkEvery, m.log), nil
		}
		return nil, fmt.Errorf("doortls: server name %q: %w", hello.ServerName, ErrUnknownHost)
	}
	if fc := set.files[name]; fc != nil {
		return fc.certificate(m.checkEvery, m.log), nil
	}
	if set.acme[name] {
		// autocert answers both the CA's TLS-ALPN-01 probes and the clients.
		c, err := m.acme.GetCertificate(hello)
		if err != nil && !acmeProbe(hello) {
			m.log.Error("obtaining a certificate over ACME", "host", name, "err", err)
		}
		return c, err
	}
	if _, rest, ok := strings.Cut(name, "."); ok {
		if fc := set.wild["."+rest]; fc != nil {
			return fc.certificate(m.checkEvery, m.log), nil
		}
	}
	if set.fallback != nil {
		return set.fallback.certificate(m.checkEvery, m.log), nil
	}
	return nil, fmt.Errorf("doortls: server name %q: %w", name, ErrUnknownHost)
}

// acmeProbe reports whether hello is the CA's TLS-ALPN-01 validation, which
// offers acme-tls/1 alone.
func acmeProbe(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

// HTTPHandler returns a handler for plain HTTP that answers ACME HTTP-01 challenges
// for the ACME sites' hosts and passes every other request to next (Redirect,
// typically). Without a CacheDir there is no ACME and it returns next.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	if m.acme == nil {
		return next
	}
	return m.acme.HTTPHandler(next)
}

// acmePolicy admits the ACME sites' hosts only, so that no client can have the CA
// asked for a name the door does not serve. HTTP-01 passes a Host with its port.
func (m *Manager) acmePolicy(_ context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	name, err := normalHost(host)
	if err == nil && m.sites.Load().acme[name] {
		return nil
	}
	return fmt.Errorf("doortls: %q is not a host of an ACME site", host)
}

// LoadRoots reads a PEM file of CA certificates into a pool, for Options.ACMERoots.
func LoadRoots(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("doortls: reading ACME roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("doortls: ACME roots %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// hostList is how errors name a site.
func hostList(hosts []string) string { return strings.Join(hosts, ", ") }
