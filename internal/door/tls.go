package door

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"

	"github.com/kiln-build/kiln/internal/doortls"
)

// certs is the door's HTTPS: one certificate manager for every TLS listener, made
// again only when the ACME account settings change.
type certs struct {
	acme  acmeSettings
	sites []doortls.Site
	mgr   *doortls.Manager
}

type acmeSettings struct{ directory, email, roots string }

// tlsSites returns the certificate sites of cfg's services and the ACME settings they
// share: services on one host share its certificate, which they must agree on.
func tlsSites(cfg Config) ([]doortls.Site, acmeSettings, error) {
	var acme acmeSettings
	acmeSet := false
	byHost := map[string]doortls.Site{}
	var order []string
	for _, s := range cfg.Services {
		t := s.TLS
		if t == nil {
			continue
		}
		if len(s.Hosts) == 0 {
			return nil, acme, fmt.Errorf("service %s: TLS needs `hosts`: the names its certificate is for", s.Name)
		}
		if t.ACME {
			a := acmeSettings{t.ACMEDirectory, t.ACMEEmail, t.ACMERoots}
			if acmeSet && a != acme {
				return nil, acme, fmt.Errorf("service %s: its ACME settings (directory, email, roots) differ from another service's on this door; one door has one ACME account", s.Name)
			}
			acme, acmeSet = a, true
		}
		for _, h := range s.Hosts {
			site := doortls.Site{Hosts: []string{h}, CertFile: t.CertFile, KeyFile: t.KeyFile, ACME: t.ACME}
			if prev, ok := byHost[h]; ok {
				if !reflect.DeepEqual(prev, site) {
					return nil, acme, fmt.Errorf("service %s: host %s has another certificate in another service; services on one host share its certificate", s.Name, h)
				}
				continue
			}
			byHost[h] = site
			order = append(order, h)
		}
	}
	// One site per certificate: the hosts of one pair of files, or of ACME.
	var sites []doortls.Site
	for _, h := range order {
		site := byHost[h]
		i := slices.IndexFunc(sites, func(x doortls.Site) bool {
			return x.CertFile == site.CertFile && x.KeyFile == site.KeyFile && x.ACME == site.ACME
		})
		if i < 0 {
			sites = append(sites, site)
			continue
		}
		sites[i].Hosts = append(sites[i].Hosts, h)
	}
	return sites, acme, nil
}

// prepareTLS makes the certificate manager serve cfg's sites; on an error the one in
// use is unchanged. Called with s.mu held.
func (s *Server) prepareTLS(cfg Config) error {
	sites, acme, err := tlsSites(cfg)
	if err != nil {
		return err
	}
	if len(sites) == 0 {
		return nil // a manager in use stays for listeners still closing
	}
	if s.certs != nil && s.certs.acme == acme {
		if reflect.DeepEqual(s.certs.sites, sites) {
			return nil
		}
		if err := s.certs.mgr.Update(sites); err != nil {
			return err
		}
		s.certs.sites = sites
		return nil
	}
	opts := doortls.Options{ACMEDirectory: acme.directory, ACMEEmail: acme.email, Logger: s.log}
	if s.opts.Dir != "" {
		opts.CacheDir = filepath.Join(s.opts.Dir, "certs")
	}
	if acme.roots != "" {
		var pool *x509.CertPool
		if pool, err = doortls.LoadRoots(acme.roots); err != nil {
			return err
		}
		opts.ACMERoots = pool
	}
	mgr, err := doortls.New(sites, opts)
	if err != nil {
		return err
	}
	s.certs = &certs{acme: acme, sites: sites, mgr: mgr}
	return nil
}

// listenerKind is what a listener serves: plain HTTP, HTTPS (with plain HTTP on the
// same port redirected, unless redirect is false), or only redirects to the HTTPS
// port redirectTo.
type listenerKind struct {
	tls        bool
	redirect   bool
	redirectTo int
}

// kinds returns the listeners cfg needs, by address: the services' own, and the
// plain-HTTP addresses whose requests are redirected to HTTPS.
func kinds(cfg Config) (map[string]listenerKind, error) {
	out := map[string]listenerKind{}
	for _, s := range cfg.Services {
		k := listenerKind{tls: s.TLS != nil, redirect: s.TLS != nil && !s.TLS.NoRedirect}
		if prev, ok := out[s.Listen]; ok && prev != k {
			return nil, fmt.Errorf("service %s: the services on %s disagree on TLS or its redirect; services sharing an address serve the same protocol", s.Name, s.Listen)
		}
		out[s.Listen] = k
	}
	for _, s := range cfg.Services {
		if s.TLS == nil || s.TLS.NoRedirect || s.TLS.RedirectHTTP == "" {
			continue
		}
		_, port, err := net.SplitHostPort(s.Listen)
		if err != nil {
			return nil, err
		}
		p, _ := strconv.Atoi(port)
		k := listenerKind{redirectTo: p}
		if prev, ok := out[s.TLS.RedirectHTTP]; ok && prev != k {
			return nil, fmt.Errorf("service %s: redirect_http %s is another service's address", s.Name, s.TLS.RedirectHTTP)
		}
		out[s.TLS.RedirectHTTP] = k
	}
	return out, nil
}

var errNoCerts = errors.New("a TLS listener without certificates")
