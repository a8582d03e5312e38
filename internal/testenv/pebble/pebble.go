package pebble

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv/proc"
)

// Config is what the test's own servers need Pebble to know.
type Config struct {
	// TLSPort and HTTPPort are the ports on 127.0.0.1 that Pebble's validation
	// dials for TLS-ALPN-01 and HTTP-01 challenges (they may be the same port, for a
	// door that splits one). Every host name resolves to 127.0.0.1. Zero: a free
	// port nothing listens on, so that challenge fails.
	TLSPort, HTTPPort int
}

// Server is a running Pebble and its DNS server.
type Server struct {
	// DirectoryURL is the ACME directory (https://127.0.0.1:port/dir).
	DirectoryURL string
	// Roots trusts Pebble's own HTTPS (its test CA, pebble.minica.pem), for an ACME
	// client; RootsFile is that CA's PEM file.
	Roots     *x509.CertPool
	RootsFile string

	managementURL string
	procs         []*proc.Proc
	stopOnce      sync.Once
}

// startTimeout bounds how long Start waits for the servers to answer.
const startTimeout = 30 * time.Second

// Start builds Pebble if needed and starts it with pebble-challtestsrv as its DNS
// server, on free loopback ports; t.Cleanup stops both. Under -short, or when the
// go command or the module proxy needed for the first build is missing, it skips t.
// Validation is real: PEBBLE_VA_ALWAYS_VALID is never set (nor any PEBBLE_
// variable from the environment); PEBBLE_VA_NOSLEEP=1 and PEBBLE_WFE_NONCEREJECT=0
// make it prompt and deterministic.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if testing.Short() {
		t.Skipf("pebble: not starting the ACME server Pebble %s under -short", Version)
	}
	dir, err := binaries()
	var missing *unavailableError
	if errors.As(err, &missing) {
		t.Skipf("pebble: %v", err)
	}
	if err != nil {
		t.Fatalf("pebble: building Pebble %s: %v", Version, err)
	}
	s, err := start(t, dir, cfg)
	if err != nil {
		t.Fatalf("pebble: %v", err)
	}
	return s
}

func start(t testing.TB, dir string, cfg Config) (*Server, error) {
	ports, err := proc.FreePorts(6)
	if err != nil {
		return nil, err
	}
	acmePort, mgmtPort, dnsPort, challMgmtPort := ports[0], ports[1], ports[2], ports[3]
	if cfg.TLSPort == 0 {
		cfg.TLSPort = ports[4]
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = ports[5]
	}
	s := &Server{
		DirectoryURL:  "https://" + addr(acmePort) + "/dir",
		RootsFile:     filepath.Join(dir, minicaFile),
		managementURL: "https://" + addr(mgmtPort),
	}
	pem, err := os.ReadFile(s.RootsFile)
	if err != nil {
		return nil, err
	}
	s.Roots = x509.NewCertPool()
	if !s.Roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", s.RootsFile)
	}
	conf := filepath.Join(t.TempDir(), "pebble-config.json")
	if err := writeConfig(conf, dir, acmePort, mgmtPort, cfg); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			for _, p := range s.procs {
				t.Logf("%s's output:\n%s", p.Name, p.Output())
			}
		}
	})

	chall, err := proc.Start(challBin, filepath.Join(dir, challBin), proc.EnvWithout("PEBBLE_"),
		"-dnsserver", addr(dnsPort), "-management", addr(challMgmtPort),
		"-http01=", "-https01=", "-doh=", "-tlsalpn01=",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6=") // A records only: the test listens on 127.0.0.1
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, chall)
	// Pebble asks over TCP: a TCP answer on the port is the DNS server up.
	if err := proc.WaitFor(chall, startTimeout, func() error { return proc.DialClose(addr(dnsPort)) }); err != nil {
		return nil, err
	}
	peb, err := proc.Start(pebbleBin, filepath.Join(dir, pebbleBin),
		append(proc.EnvWithout("PEBBLE_"), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"),
		"-config", conf, "-dnsserver", addr(dnsPort))
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, peb)
	client := s.client()
	err = proc.WaitFor(peb, startTimeout, func() error {
		if _, err := get(context.Background(), client, s.DirectoryURL); err != nil {
			return err
		}
		_, err := get(context.Background(), client, s.managementURL+"/roots/0")
		return err
	})
	return s, err
}

func writeConfig(file, dir string, acmePort, mgmtPort int, cfg Config) error {
	c := map[string]any{"pebble": map[string]any{
		"listenAddress":                  addr(acmePort),
		"managementListenAddress":        addr(mgmtPort),
		"certificate":                    filepath.Join(dir, certFile),
		"privateKey":                     filepath.Join(dir, keyFile),
		"httpPort":                       cfg.HTTPPort,
		"tlsPort":                        cfg.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		// 90 days, as Let's Encrypt's: autocert renews 30 days before the end.
		"profiles": map[string]any{"default": map[string]any{"description": "kiln tests", "validityPeriod": 7776000}},
	}}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o600)
}

// IssuingRoot fetches the root CA that signs the certificates this Pebble issues
// (a new one each run), for a client to verify them.
func (s *Server) IssuingRoot(ctx context.Context) (*x509.CertPool, error) {
	pem, err := get(ctx, s.client(), s.managementURL+"/roots/0")
	if err != nil {
		return nil, fmt.Errorf("pebble: fetching the issuing root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("pebble: the issuing root is no PEM certificate: %q", pem)
	}
	return pool, nil
}

// Stop stops Pebble and its DNS server and waits for them; it is idempotent
// (t.Cleanup calls it too), and a test calls it to prove it no longer needs Pebble.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		for _, p := range s.procs {
			p.Stop()
		}
	})
}

func (s *Server) client() *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Roots}, DisableKeepAlives: true}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	return proc.Get(ctx, c, url, "")
}

func addr(port int) string { return proc.Addr(port) }
