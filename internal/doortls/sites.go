package doortls

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/idna"
)

// siteSet is one Update's sites, compiled for lookups by server name. It is never
// changed once built: Update swaps in a new one.
type siteSet struct {
	files map[string]*fileCert // host → the certificate of its site
	wild  map[string]*fileCert // ".example.com" → the certificate of "*.example.com"
	acme  map[string]bool      // hosts of the ACME sites
	// fallback is the certificate of the site without hosts, served for a server name
	// no other site has (and for none).
	fallback *fileCert
}

// compile checks sites and loads their certificate files. haveACME says whether
// the Manager has a cache, without which no ACME site can be served.
func compile(sites []Site, haveACME bool) (*siteSet, error) {
	set := &siteSet{files: map[string]*fileCert{}, wild: map[string]*fileCert{}, acme: map[string]bool{}}
	owner := map[string]string{} // host → the site it belongs to, for errors
	for i, s := range sites {
		if len(s.Hosts) == 0 {
			switch {
			case s.ACME:
				return nil, fmt.Errorf("site %d of %d: ACME needs the hosts to ask certificates for", i+1, len(sites))
			case set.fallback != nil:
				return nil, fmt.Errorf("site %d of %d: two sites without hosts: one certificate serves the names no site has", i+1, len(sites))
			case s.CertFile == "" || s.KeyFile == "":
				return nil, fmt.Errorf("site %d of %d has no host, and not both a certificate file and a key file", i+1, len(sites))
			}
			fc, err := loadFileCert(nil, s.CertFile, s.KeyFile)
			if err != nil {
				return nil, err
			}
			set.fallback = fc
			continue
		}
		name := hostList(s.Hosts)
		hosts := make([]string, 0, len(s.Hosts))
		for _, h := range s.Hosts {
			if rest, ok := strings.CutPrefix(h, "*."); ok && !s.ACME {
				n, err := normalHost(rest)
				if err != nil {
					return nil, fmt.Errorf("site %s: %w", name, err)
				}
				h = "*." + n
				if other, dup := owner[h]; dup {
					return nil, fmt.Errorf("host %s is in two sites (%s) and (%s): a host has one certificate", h, other, name)
				}
				owner[h] = name
				hosts = append(hosts, h)
				continue
			}
			n, err := normalHost(h)
			if err != nil {
				return nil, fmt.Errorf("site %s: %w", name, err)
			}
			if other, dup := owner[n]; dup {
				return nil, fmt.Errorf("host %s is in two sites (%s) and (%s): a host has one certificate", n, other, name)
			}
			owner[n] = name
			hosts = append(hosts, n)
		}
		files := s.CertFile != "" || s.KeyFile != ""
		switch {
		case s.ACME && files:
			return nil, fmt.Errorf("site %s: both ACME and certificate files: give one or the other", name)
		case s.ACME:
			if !haveACME {
				return nil, fmt.Errorf("site %s: ACME needs a certificate cache directory (Options.CacheDir)", name)
			}
			for _, h := range hosts {
				// autocert refuses a server name of one label.
				if !strings.Contains(h, ".") {
					return nil, fmt.Errorf("site %s: ACME needs a host name with a dot, not %q", name, h)
				}
				set.acme[h] = true
			}
		case s.CertFile == "" || s.KeyFile == "":
			return nil, fmt.Errorf("site %s: needs both a certificate file and a key file, or ACME", name)
		default:
			fc, err := loadFileCert(hosts, s.CertFile, s.KeyFile)
			if err != nil {
				return nil, err
			}
			for _, h := range hosts {
				if suffix, ok := strings.CutPrefix(h, "*"); ok {
					set.wild[suffix] = fc
					continue
				}
				set.files[h] = fc
			}
		}
	}
	return set, nil
}

// normalHost is the form of a host name the sites are keyed by, the one autocert
// asks the CA for: ASCII (punycode), lower case, no trailing dot. An empty name
// stays empty; an address, a port or a wildcard is an error.
func normalHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return "", nil
	}
	if net.ParseIP(strings.Trim(h, "[]")) != nil {
		return "", fmt.Errorf("host %q is an address: TLS clients send no server name for one", h)
	}
	if strings.ContainsAny(h, ":/*") {
		return "", fmt.Errorf("host %q: a site's host is a plain name (no port, path or wildcard)", h)
	}
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", fmt.Errorf("host %q is not a valid host name: %w", h, err)
	}
	if a == "" {
		return "", errors.New("empty host name")
	}
	return a, nil
}
