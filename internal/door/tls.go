package door

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"

	"github.com/kiln-build/kiln/internal/atomicfile"
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

// tlsSites returns the certificate sites of the services of cfg on addr and the ACME
// settings they share: services on one host share its certificate, which they must
// agree on; a service without hosts has the certificate of every other name.
func (s *Server) tlsSites(cfg Config, addr string) ([]doortls.Site, acmeSettings, error) {
	var acme acmeSettings
	acmeSet := false
	byHost := map[string]doortls.Site{}
	var order []string
	for _, sc := range cfg.Services {
		t := sc.TLS
		if t == nil || listenKey(sc) != addr {
			continue
		}
		if t.ACME {
			a := acmeSettings{t.ACMEDirectory, t.ACMEEmail, t.ACMERoots + t.ACMERootsPEM}
			if acmeSet && a != acme {
				return nil, acme, fmt.Errorf("service %s: its ACME settings (directory, email, roots) differ from another service's on this door; one door has one ACME account", sc.Name)
			}
			acme, acmeSet = a, true
		}
		hosts := sc.Hosts
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		certFile, keyFile := t.CertFile, t.KeyFile
		if t.CertPEM != "" || t.KeyPEM != "" {
			var err error
			if certFile, err = s.keep(t.CertPEM, "crt"); err == nil {
				keyFile, err = s.keep(t.KeyPEM, "key")
			}
			if err != nil {
				return nil, acme, fmt.Errorf("service %s: keeping its certificate: %w", sc.Name, err)
			}
		}
		for _, h := range hosts {
			site := doortls.Site{Hosts: []string{h}, CertFile: certFile, KeyFile: keyFile, ACME: t.ACME}
			if prev, ok := byHost[h]; ok {
				if !reflect.DeepEqual(prev, site) {
					return nil, acme, fmt.Errorf("service %s: host %s has another certificate in another service; services on one host share its certificate", sc.Name, h)
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
		if h == "" {
			site.Hosts = nil
			sites = append(sites, site)
			continue
		}
		i := slices.IndexFunc(sites, func(x doortls.Site) bool {
			return len(x.Hosts) > 0 && x.CertFile == site.CertFile && x.KeyFile == site.KeyFile && x.ACME == site.ACME
		})
		if i < 0 {
			sites = append(sites, site)
			continue
		}
		sites[i].Hosts = append(sites[i].Hosts, h)
	}
	return sites, acme, nil
}

// prepareTLS makes each TLS listener's certificate manager serve the sites of cfg's
// services on it; on an error the managers in use are unchanged. Called with s.mu
// held.
func (s *Server) prepareTLS(cfg Config, ks map[string]listenerKind) error {
	next := map[string]*certs{}
	var updates []func()
	for addr, k := range ks {
		if !k.tls {
			continue
		}
		sites, acme, err := s.tlsSites(cfg, addr)
		if err != nil {
			return err
		}
		cur := s.certs[addr]
		if cur != nil && cur.acme == acme {
			next[addr] = cur
			if !reflect.DeepEqual(cur.sites, sites) {
				// Checked now, swapped in once every listener's is known good.
				if _, err := doortls.New(sites, doortls.Options{Logger: s.log, CacheDir: s.cacheDir()}); err != nil {
					return err
				}
				updates = append(updates, func() { cur.mgr.Update(sites); cur.sites = sites })
			}
			continue
		}
		opts := doortls.Options{ACMEDirectory: acme.directory, ACMEEmail: acme.email, Logger: s.log, CacheDir: s.cacheDir()}
		if acme.roots != "" {
			pool, err := acmeRoots(cfg, addr)
			if err != nil {
				return err
			}
			opts.ACMERoots = pool
		}
		mgr, err := doortls.New(sites, opts)
		if err != nil {
			return err
		}
		next[addr] = &certs{acme: acme, sites: sites, mgr: mgr}
	}
	for _, u := range updates {
		u()
	}
	s.certs = next
	return nil
}

// cacheDir is where ACME keys and certificates are kept: "" (no ACME) without a Dir.
func (s *Server) cacheDir() string {
	if s.opts.Dir == "" {
		return ""
	}
	return filepath.Join(s.opts.Dir, "certs")
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
		if prev, ok := out[listenKey(s)]; ok && prev != k {
			return nil, fmt.Errorf("service %s: the services on %s disagree on TLS or its redirect; services sharing an address serve the same protocol", s.Name, s.Listen)
		}
		out[listenKey(s)] = k
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

// acmeRoots is the pool of CAs the ACME services on addr trust for the ACME server.
func acmeRoots(cfg Config, addr string) (*x509.CertPool, error) {
	for _, sc := range cfg.Services {
		t := sc.TLS
		if t == nil || listenKey(sc) != addr || !t.ACME {
			continue
		}
		if t.ACMERootsPEM != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(t.ACMERootsPEM)) {
				return nil, fmt.Errorf("service %s: acme_roots holds no PEM certificate", sc.Name)
			}
			return pool, nil
		}
		if t.ACMERoots != "" {
			return doortls.LoadRoots(t.ACMERoots)
		}
	}
	return nil, nil
}

// keep writes pem into the door's directory (tls/, mode 0600, named by its digest)
// and returns the file's path: what the certificate manager reads, and reloads when a
// new configuration brings other PEM.
func (s *Server) keep(pem, ext string) (string, error) {
	dir := filepath.Join(cmp.Or(s.opts.Dir, os.TempDir()), "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(pem))
	path := filepath.Join(dir, hex.EncodeToString(sum[:12])+"."+ext)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	return path, atomicfile.Write(path, []byte(pem), 0o600)
}
