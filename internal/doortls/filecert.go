package doortls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fileCert is a site's certificate from its files. A handshake looks at the files
// again when the last look is older than the Manager's checkEvery: a stat of each,
// and a reload when either changed (another file, mtime or size). A reload that
// fails keeps the certificate served and is logged once; the files are read again
// only when they change again.
type fileCert struct {
	hosts             []string
	certFile, keyFile string

	cert    atomic.Pointer[tls.Certificate]
	checked atomic.Int64 // time of the last look, UnixNano

	mu      sync.Mutex // one look at a time; the fields below are its
	loaded  pairStamp  // the files of cert
	refused pairStamp  // the files of the last failed reload
	lastErr string
}

// pairStamp is what a stat says of the certificate file and the key file.
type pairStamp [2]os.FileInfo

func statPair(certFile, keyFile string) (pairStamp, error) {
	var st pairStamp
	for i, f := range []string{certFile, keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return pairStamp{}, fmt.Errorf("%s file: %w", [2]string{"certificate", "key"}[i], err)
		}
		st[i] = fi
	}
	return st, nil
}

// same reports whether both stamps are of the same, unchanged files; a zero stamp
// is the same as nothing.
func (a pairStamp) same(b pairStamp) bool {
	for i := range a {
		if a[i] == nil || b[i] == nil || !os.SameFile(a[i], b[i]) ||
			!a[i].ModTime().Equal(b[i].ModTime()) || a[i].Size() != b[i].Size() {
			return false
		}
	}
	return true
}

func loadFileCert(hosts []string, certFile, keyFile string) (*fileCert, error) {
	fc := &fileCert{hosts: hosts, certFile: certFile, keyFile: keyFile}
	// Stat first: a file changed while it is read is then seen changed at the next look.
	st, err := statPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", hostList(hosts), err)
	}
	cert, err := loadPair(hosts, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	fc.cert.Store(cert)
	fc.loaded = st
	fc.checked.Store(time.Now().UnixNano())
	return fc, nil
}

// loadPair reads and checks a certificate and its key: the key must go with the
// certificate, and the certificate must name every host of the site.
func loadPair(hosts []string, certFile, keyFile string) (*tls.Certificate, error) {
	site := hostList(hosts)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("site %s: reading its certificate: %w", site, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("site %s: reading its key: %w", site, err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("site %s: certificate file %s does not start with a PEM certificate", site, certFile)
	}
	// The leaf parsed on its own, what X509KeyPair still refuses is the key.
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return nil, fmt.Errorf("site %s: certificate file %s: %w", site, certFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("site %s: key file %s does not go with certificate file %s: %w", site, keyFile, certFile, err)
	}
	for _, h := range hosts {
		if strings.HasPrefix(h, "*.") {
			if !slices.Contains(cert.Leaf.DNSNames, h) {
				return nil, fmt.Errorf("site %s: certificate file %s does not name %s (it names %s)",
					site, certFile, h, strings.Join(cert.Leaf.DNSNames, ", "))
			}
			continue
		}
		if err := cert.Leaf.VerifyHostname(h); err != nil {
			return nil, fmt.Errorf("site %s: certificate file %s does not name host %s (it names %s)",
				site, certFile, h, strings.Join(cert.Leaf.DNSNames, ", "))
		}
	}
	return &cert, nil
}

// certificate returns the certificate to serve, looking at the files first when
// the last look is older than every. A handshake that finds another one looking
// does not wait for it.
func (fc *fileCert) certificate(every time.Duration, log *slog.Logger) *tls.Certificate {
	now := time.Now().UnixNano()
	if now-fc.checked.Load() >= int64(every) && fc.mu.TryLock() {
		fc.checked.Store(now)
		fc.recheck(log)
		fc.mu.Unlock()
	}
	return fc.cert.Load()
}

// recheck reloads the pair if its files changed. Called with mu held.
func (fc *fileCert) recheck(log *slog.Logger) {
	st, err := statPair(fc.certFile, fc.keyFile)
	if err == nil && (st.same(fc.loaded) || st.same(fc.refused)) {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = loadPair(fc.hosts, fc.certFile, fc.keyFile)
	} else {
		err = fmt.Errorf("site %s: %w", hostList(fc.hosts), err)
	}
	if err != nil {
		fc.refused = st
		if err.Error() != fc.lastErr {
			fc.lastErr = err.Error()
			log.Error("reloading a certificate: still serving the one loaded before",
				"hosts", hostList(fc.hosts), "cert_file", fc.certFile, "key_file", fc.keyFile, "err", err)
		}
		return
	}
	fc.cert.Store(cert)
	fc.loaded, fc.refused, fc.lastErr = st, pairStamp{}, ""
	log.Info("reloaded a certificate", "hosts", hostList(fc.hosts), "cert_file", fc.certFile,
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}
