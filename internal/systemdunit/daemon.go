package systemdunit

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Daemon is the unit of kiln's daemon (`kiln serve`) for one project directory.
type Daemon struct {
	// Name is the unit's name, with its ".service".
	Name string
	// Dir is the project directory (absolute): serve runs in it, and finds its spec
	// and state there.
	Dir string
	// Binary is the kiln executable (absolute); ServeArgs the arguments after it, as
	// ServeArgs returns them.
	Binary    string
	ServeArgs []string
	// User runs the daemon; Home is its home directory ("" sets no HOME).
	User string
	Home string
	// Path is the daemon's PATH, where it finds go and git for bakes.
	Path string
	// Env are further NAME=value assignments (DOCKER_HOST...), in order.
	Env []string
	// EnvFile is an environment file read if it exists: the environment variables
	// that secret blocks name (env = "DB_PASSWORD") go there.
	EnvFile string
	// LongestDrain is the longest drain_timeout of the spec's services: the daemon's
	// stop may take that long, plus StopMargin.
	LongestDrain time.Duration
}

// StopMargin is what a stop of the daemon may take beyond its doors' drains: the API's
// requests in flight (5 s), a rollout's step in flight, the state closed.
const StopMargin = 15 * time.Second

// DefaultPath is the PATH systemd gives a system service.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ServeArgs are the arguments after the kiln binary that serve dir: -C dir, then
// --state-dir when it is not the default (dir/.kiln), then serve.
func ServeArgs(dir, stateDir string) []string {
	args := []string{"-C", dir}
	if stateDir != "" {
		args = append(args, "--state-dir", stateDir)
	}
	return append(args, "serve")
}

// unitName is what a unit name may hold here: no template ("@"), no escapes.
var unitName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,248}\.service$`)

// userName is what a user name or numeric UID may be in User=.
var userName = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10})$`)

// Unit renders the unit file. Its choices, written beside them in the file:
// Wants= (not Requires=) docker.service, so that a restart of the Docker engine does
// not stop kiln; a restart on any exit, one second apart and never given up; SIGTERM
// (kiln stop's signal, after which the daemon stops in order and exits 0) to the
// daemon alone, which ends what it started, and whatever is left is killed after it
// exits (KillMode=mixed); TimeoutStopSec the longest drain plus StopMargin.
func (d Daemon) Unit() ([]byte, error) {
	if !unitName.MatchString(d.Name) {
		return nil, fmt.Errorf("unit name %q: write letters, digits and \"_.:-\", ending in .service", d.Name)
	}
	if !userName.MatchString(d.User) {
		return nil, fmt.Errorf("user %q is not a user name or a numeric UID that systemd takes", d.User)
	}
	exec, err := ExecArgs(append([]string{d.Binary}, d.ServeArgs...))
	if err != nil {
		return nil, fmt.Errorf("ExecStart: %w", err)
	}
	dir, err := Path(d.Dir)
	if err != nil {
		return nil, fmt.Errorf("WorkingDirectory: %w", err)
	}
	desc, err := Text("kiln daemon for " + d.Dir)
	if err != nil {
		return nil, err
	}
	env := []string{}
	if d.Home != "" {
		env = append(env, "HOME="+d.Home)
	}
	if d.Path != "" {
		env = append(env, "PATH="+d.Path)
	}
	environment, err := Env(append(env, d.Env...)...)
	if err != nil {
		return nil, fmt.Errorf("Environment: %w", err)
	}
	var envFile string
	if d.EnvFile != "" {
		if envFile, err = Path(d.EnvFile); err != nil {
			return nil, fmt.Errorf("EnvironmentFile: %w", err)
		}
	}
	stop := d.LongestDrain + StopMargin

	var b bytes.Buffer
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# %s: kiln's daemon for %s, written by `kiln service install`.", d.Name, strings.ReplaceAll(d.Dir, "\n", " "))
	line("# Run it again to rewrite this file; `kiln service uninstall` disables and removes it.")
	line("[Unit]")
	line("Description=%s", desc)
	line("# Wanted, not required: a restart of the Docker engine must not stop kiln, whose front")
	line("# doors keep serving; the daemon reconnects, or exits and is restarted below.")
	line("Wants=docker.service network-online.target")
	line("After=docker.service network-online.target")
	line("# Restarted however often it exits: it must come back once Docker does.")
	line("StartLimitIntervalSec=0")
	line("")
	line("[Service]")
	line("Type=exec")
	line("User=%s", d.User)
	line("WorkingDirectory=%s", dir)
	if environment != "" {
		line("Environment=%s", environment)
	}
	if envFile != "" {
		line("# The variables that secret blocks read (env = \"NAME\"), if the file exists.")
		line("EnvironmentFile=-%s", envFile)
	}
	line("ExecStart=%s", exec)
	line("# kiln stop's signal: the daemon stops in order (no new API requests, a rollout's step")
	line("# in flight ends; the front doors keep serving, as they run apart) and exits 0. It alone is signalled, and ends")
	line("# what it started; what is left when it has exited is killed.")
	line("KillSignal=SIGTERM")
	line("KillMode=mixed")
	line("# The longest drain_timeout of the spec's services (%s) and %s for the rest of the stop;", d.LongestDrain, StopMargin)
	line("# run `kiln service install` again after raising a drain_timeout.")
	line("TimeoutStopSec=%s", seconds(stop))
	line("Restart=always")
	line("RestartSec=1s")
	line("")
	line("[Install]")
	line("WantedBy=multi-user.target")
	return b.Bytes(), nil
}

// seconds writes d as systemd reads a time span, in whole seconds (rounded up).
func seconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int64((d+time.Second-1)/time.Second))
}
