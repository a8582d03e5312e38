package driver

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// ErrUnknownOption: a driver was given an option it does not have.
var ErrUnknownOption = errors.New("unknown driver option")

// Config is what every driver is opened with (see internal/driver/registry).
type Config struct {
	// Project is the kiln project (one state directory) the daemon serves. Specs carry
	// their own Project; a driver may use this one to scope what it owns, e.g. a
	// Kubernetes namespace.
	Project string
	// StateDir is a directory for the driver's own files (a VM's disks, a kubeconfig
	// cache), private to it, made 0700 by the caller. "" when there is none: the
	// driver then keeps no files.
	StateDir string
	// Digest is the keyed digest the caller fills ServerSpec.Digests with; a driver
	// checks a server's environment against its recorded spec with it. Nil: no check.
	Digest func([]byte) string
	// Options are the driver's own settings by name, e.g. docker's "host". A driver
	// rejects a name it does not know with ErrUnknownOption.
	Options map[string]string
	// Log is where the driver logs; nil is slog.Default().
	Log *slog.Logger
}

// Logger is cfg.Log, or slog.Default() when it is nil.
func (cfg Config) Logger() *slog.Logger {
	if cfg.Log == nil {
		return slog.Default()
	}
	return cfg.Log
}

// CheckOptions returns an error wrapping ErrUnknownOption for the first option of
// cfg not among known.
func (cfg Config) CheckOptions(known ...string) error {
	for name := range cfg.Options {
		ok := false
		for _, k := range known {
			ok = ok || k == name
		}
		if !ok {
			return fmt.Errorf("%w %q (known: %v)", ErrUnknownOption, name, known)
		}
	}
	return nil
}

// Duration is option name as a duration ("10s"), def when it is not set.
func (cfg Config) Duration(name string, def time.Duration) (time.Duration, error) {
	v, ok := cfg.Options[name]
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("driver option %s: %q is not a duration", name, v)
	}
	return d, nil
}

// Int is option name as a whole number, def when it is not set.
func (cfg Config) Int(name string, def int64) (int64, error) {
	v, ok := cfg.Options[name]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("driver option %s: %q is not a number", name, v)
	}
	return n, nil
}
