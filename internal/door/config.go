package door

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// Version is the version of the configuration and control protocol a door speaks. A
// daemon keeps a running door of the same Version across its own restarts and upgrades;
// one of another Version is replaced.
const Version = 1

// Config is everything a door serves. The daemon sends it whole; the door persists it
// before it answers, so that a restarted door serves it again.
type Config struct {
	// Generation orders configurations: a door ignores one older than what it serves.
	Generation int64     `json:"generation"`
	Services   []Service `json:"services"`
}

// Service is one service's front door: where it listens, which requests are its, and
// the servers in its rotation.
type Service struct {
	Name   string `json:"name"`
	Listen string `json:"listen"` // host:port
	// Hosts the service answers for (lower case; "*.example.com" for one label); none
	// means any host. Path is the prefix of the paths it answers for ("" is "/"), and
	// StripPath removes it before forwarding.
	Hosts     []string `json:"hosts,omitempty"`
	Path      string   `json:"path,omitempty"`
	StripPath bool     `json:"strip_path,omitempty"`
	// Upstreams are the servers in rotation ("host:port"), healthy when the daemon last
	// looked; the door takes out of rotation those that fail Health meanwhile.
	Upstreams []string `json:"upstreams"`
	Health    Health   `json:"health"`
	// DrainTimeout bounds how long requests to a server leaving rotation may go on
	// (0: DefaultDrainTimeout; negative: not at all); those still going then are cut.
	DrainTimeout time.Duration `json:"drain_timeout,omitempty"`
	AccessLog    bool          `json:"access_log,omitempty"`
	// Paused holds new requests (up to PauseTimeout, then 503) until resumed;
	// Maintenance, when set, answers every request 503 with it as the body.
	Paused      bool   `json:"paused,omitempty"`
	Maintenance string `json:"maintenance,omitempty"`
	TLS         *TLS   `json:"tls,omitempty"`
	// Canary, when set, sends a share of the requests to other servers (see Canary).
	Canary *Canary `json:"canary,omitempty"`
}

// Health is how the door checks a service's upstreams itself: HTTP GET of Path (or a
// TCP connect when Path is empty and TCP is set) every Interval; an upstream failing
// Fall checks in a row leaves rotation until one passes. A zero Interval checks nothing.
type Health struct {
	Path     string        `json:"path,omitempty"`
	TCP      bool          `json:"tcp,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
	Fall     int           `json:"fall,omitempty"`
}

// TLS is a service's HTTPS: a certificate and its key (PEM), or ACME for its Hosts.
// The door gets the PEM itself, not the files' paths (it runs sealed off, in a
// container of its own): the daemon reads the files, and sends them again when they
// change. CertFile and KeyFile are used where CertPEM and KeyPEM are empty.
type TLS struct {
	CertPEM       string        `json:"cert_pem,omitempty"`
	KeyPEM        string        `json:"key_pem,omitempty"`
	CertFile      string        `json:"cert_file,omitempty"`
	KeyFile       string        `json:"key_file,omitempty"`
	ACME          bool          `json:"acme,omitempty"`
	ACMEEmail     string        `json:"acme_email,omitempty"`
	ACMEDirectory string        `json:"acme_directory,omitempty"`
	ACMERoots     string        `json:"acme_roots,omitempty"`     // a PEM file, where ACMERootsPEM is empty
	ACMERootsPEM  string        `json:"acme_roots_pem,omitempty"` // the CAs of the ACME server's HTTPS
	RedirectHTTP  string        `json:"redirect_http,omitempty"`
	NoRedirect    bool          `json:"no_redirect,omitempty"`
	HSTS          time.Duration `json:"hsts,omitempty"`
}

// Defaults of a Service.
const (
	DefaultDrainTimeout = 30 * time.Second
	DefaultPauseTimeout = 30 * time.Second
	defaultCheckTimeout = 2 * time.Second
	defaultFall         = 2
)

// Validate reports the first thing in c a door cannot serve: a service without a name
// or a listen address, two services of the same name, or two claiming the same host and
// path on one address.
func (c Config) Validate() error {
	names := map[string]bool{}
	claims := map[string]string{}
	for _, s := range c.Services {
		if s.Name == "" {
			return errors.New("a service has no name")
		}
		if names[s.Name] {
			return fmt.Errorf("service %s is configured twice", s.Name)
		}
		names[s.Name] = true
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			return fmt.Errorf("service %s: listen address %q: %w", s.Name, s.Listen, err)
		}
		if c := s.Canary; c != nil {
			if c.Weight < 0 || c.Weight > 100 {
				return fmt.Errorf("service %s: canary weight %g is not a percentage", s.Name, c.Weight)
			}
			if c.Sticky != "" && c.Sticky != StickyCookie && (!strings.HasPrefix(c.Sticky, "header:") || len(c.Sticky) == len("header:")) {
				return fmt.Errorf("service %s: canary stickiness %q is neither %q nor \"header:NAME\"", s.Name, c.Sticky, StickyCookie)
			}
		}
		hosts := s.Hosts
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		for _, h := range hosts {
			k := listenKey(s) + " " + strings.ToLower(h) + " " + cleanPath(s.Path)
			if other, dup := claims[k]; dup {
				return fmt.Errorf("services %s and %s both claim host %s, path %s on %s", other, s.Name, h, cleanPath(s.Path), s.Listen)
			}
			claims[k] = s.Name
		}
	}
	return nil
}

// listenKey names the listener of s: its address, shared with the other services
// there, except on port 0, which is a listener of its own (on a port picked for it).
func listenKey(s Service) string {
	if strings.HasSuffix(s.Listen, ":0") {
		return s.Listen + " " + s.Name
	}
	return s.Listen
}

// listenAddr is the address of the listener named key.
func listenAddr(key string) string {
	addr, _, _ := strings.Cut(key, " ")
	return addr
}

// cleanPath is p as a prefix: "/" for none, no trailing slash otherwise.
func cleanPath(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	return p
}

// drainTimeout is DrainTimeout read: 0 is the default, a negative value none.
func (s Service) drainTimeout() time.Duration {
	if s.DrainTimeout < 0 {
		return 0
	}
	return cmp.Or(s.DrainTimeout, DefaultDrainTimeout)
}

// service returns the service named name, if c has it.
func (c Config) service(name string) (Service, bool) {
	i := slices.IndexFunc(c.Services, func(s Service) bool { return s.Name == name })
	if i < 0 {
		return Service{}, false
	}
	return c.Services[i], true
}

// ConfigFile is where a door keeps its configuration, in its directory.
const ConfigFile = "config.json"

// Load reads the configuration kept in dir; a door that was never configured has the
// empty one.
func Load(dir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("reading the door's configuration: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("the door's configuration %s is not valid JSON (%v): move it away, and the daemon configures the door again", filepath.Join(dir, ConfigFile), err)
	}
	return c, nil
}

// save writes c into dir atomically, readable by its owner only.
func save(dir string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("saving the door's configuration: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the door's configuration: %w", err)
	}
	return nil
}
