package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/systemdunit"
)

// systemctl is the service manager the service verbs drive; tests point it elsewhere.
var systemctl = systemdunit.System

// serviceFlags are the flags of kiln service's verbs.
type serviceFlags struct {
	dir, user, name, unitDir, binary string
	noEnable                         bool
}

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Run kiln's daemon as a systemd service on this machine",
		Long: `Service writes, enables and removes the systemd unit that runs kiln serve for a
project directory, so that the daemon (its API, front doors, controller and pipelines)
starts at boot and is restarted whenever it exits.`,
		Example: `  sudo kiln service install --dir /srv/app        # write kiln-app.service, enable and start it
  kiln service print --dir /srv/app                # the unit, without writing it
  sudo kiln service uninstall --dir /srv/app       # disable, stop and remove it`,
	}
	cmd.AddCommand(newServiceInstallCmd(g), newServicePrintCmd(g), newServiceUninstallCmd(g))
	return cmd
}

func newServiceInstallCmd(g *globals) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Write the systemd unit of the daemon for a directory, enable and start it",
		Long: `Install writes a systemd unit (default /etc/systemd/system/kiln-<dirname>.service)
that runs ` + "`kiln -C DIR serve`" + ` as the directory's owner, after the network and the Docker
engine, restarted whenever it exits; then, unless --no-enable, runs systemctl
daemon-reload and systemctl enable --now. Where systemd does not run the machine (a
container, another init), it writes the unit and prints the commands to run.

The unit's environment is HOME, a PATH with the directories of go and git found here,
the DOCKER_* variables set here, and /etc/default/<name> if it exists (for the
variables secret blocks read). Running it again rewrites the unit.`,
		Example: `  sudo kiln service install                          # the directory here
  sudo kiln service install --dir /srv/app --user app
  kiln service install --unit-dir ~/units --no-enable  # only write it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, path, err := f.daemonUnit(g)
			if err != nil {
				return err
			}
			unit, err := d.Unit()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(f.unitDir, 0o755); err != nil {
				return fmt.Errorf("unit directory: %w", err)
			}
			if err := atomicfile.Write(path, unit, 0o644); err != nil {
				return fmt.Errorf("writing the unit %s: %w%s", path, err, asRoot(err))
			}
			fmt.Fprintf(g.stdout, "wrote %s: kiln serve in %s as %s\n", path, d.Dir, d.User)
			sc := systemctl(g.stdout, g.stderr)
			switch {
			case f.noEnable:
				fmt.Fprintf(g.stdout, "not enabled (--no-enable); to start it now and at boot:\n  systemctl daemon-reload\n  systemctl enable --now %s\n", d.Name)
			case !sc.Running():
				fmt.Fprintf(g.stdout, "systemd is not running here (no %s, or no systemctl): the unit is written, not enabled. On the machine that boots with it, run:\n  systemctl daemon-reload\n  systemctl enable --now %s\n", sc.RunDir, d.Name)
			default:
				if err := sc.Run(cmd.Context(), "daemon-reload"); err != nil {
					return err
				}
				if err := sc.Run(cmd.Context(), "enable", "--now", d.Name); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "enabled and started %s: systemctl status %s; journalctl -u %s -f\n", d.Name, d.Name, d.Name)
			}
			return nil
		},
	}
	f.bind(cmd, true)
	return cmd
}

func newServicePrintCmd(g *globals) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "print",
		Short: "Print the systemd unit kiln service install would write",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, _, err := f.daemonUnit(g)
			if err != nil {
				return err
			}
			unit, err := d.Unit()
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(unit)
			return err
		},
	}
	f.bind(cmd, false)
	return cmd
}

func newServiceUninstallCmd(g *globals) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and disable the daemon's systemd unit, and remove it",
		Long: `Uninstall runs systemctl disable --now for the unit kiln service install wrote, removes
the unit file and runs systemctl daemon-reload. It removes only a unit kiln wrote. The
servers keep running, and the state directory stays: kiln serve (or another install)
takes them over.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := f.absDir()
			if err != nil {
				return err
			}
			name, err := f.unitName(dir)
			if err != nil {
				return err
			}
			path := filepath.Join(f.unitDir, name)
			b, err := os.ReadFile(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("no unit at %s: nothing to uninstall (give --name or --unit-dir if it was installed with them)", path)
			case err != nil:
				return err
			case !bytes.Contains(b, []byte(unitMark)):
				return fmt.Errorf("%s was not written by kiln service install: remove it yourself if it is to go", path)
			}
			sc := systemctl(g.stdout, g.stderr)
			running := sc.Running()
			if running {
				if err := sc.Run(cmd.Context(), "disable", "--now", name); err != nil {
					return err
				}
			}
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("removing the unit: %w%s", err, asRoot(err))
			}
			if err := atomicfile.SyncDir(f.unitDir); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed %s\n", path)
			if !running {
				fmt.Fprintf(g.stdout, "systemd is not running here (no %s, or no systemctl). On the machine that ran it, run:\n  systemctl disable --now %s\n  systemctl daemon-reload\n", sc.RunDir, name)
				return nil
			}
			return sc.Run(cmd.Context(), "daemon-reload")
		},
	}
	f.bind(cmd, false)
	cmd.Flags().Lookup("user").Hidden = true
	cmd.Flags().Lookup("binary").Hidden = true
	return cmd
}

// unitMark is in every unit kiln service install writes (see systemdunit.Daemon.Unit).
const unitMark = "written by `kiln service install`"

func (f *serviceFlags) bind(cmd *cobra.Command, install bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.dir, "dir", ".", "the project `DIR` the daemon serves")
	fs.StringVar(&f.user, "user", "", "the `USER` the daemon runs as (default: the directory's owner, else the user running this)")
	fs.StringVar(&f.name, "name", "", "the unit's `NAME` (default: kiln-<the directory's name>)")
	fs.StringVar(&f.unitDir, "unit-dir", systemdunit.DefaultUnitDir, "the `DIR` the unit is written in")
	fs.StringVar(&f.binary, "binary", "", "the kiln `PATH` the unit runs (default: this executable)")
	if install {
		fs.BoolVar(&f.noEnable, "no-enable", false, "only write the unit: no systemctl daemon-reload, enable --now")
	}
}

func (f *serviceFlags) absDir() (string, error) {
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return "", err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return "", fmt.Errorf("--dir: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("--dir %s is not a directory", f.dir)
	}
	return dir, nil
}

// unitName is --name, with ".service", or kiln-<the directory's name>.
func (f *serviceFlags) unitName(dir string) (string, error) {
	name := f.name
	if name == "" {
		base := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(filepath.Base(dir), "-")
		if base = strings.Trim(base, "-."); base == "" {
			base = "project"
		}
		name = "kiln-" + base
	}
	if !strings.HasSuffix(name, ".service") {
		name += ".service"
	}
	return name, nil
}

// daemonUnit is the unit the flags describe, with the defaults filled in, and where it
// is written.
func (f *serviceFlags) daemonUnit(g *globals) (systemdunit.Daemon, string, error) {
	dir, err := f.absDir()
	if err != nil {
		return systemdunit.Daemon{}, "", err
	}
	name, err := f.unitName(dir)
	if err != nil {
		return systemdunit.Daemon{}, "", err
	}
	bin := f.binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return systemdunit.Daemon{}, "", fmt.Errorf("finding this executable (give --binary): %w", err)
		}
	}
	if bin, err = filepath.Abs(bin); err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return systemdunit.Daemon{}, "", fmt.Errorf("--binary: %w", err)
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return systemdunit.Daemon{}, "", fmt.Errorf("--binary %s is not an executable file", bin)
	}
	u, err := f.runAs(dir)
	if err != nil {
		return systemdunit.Daemon{}, "", err
	}
	var specFile, stateDir string
	if g.file != "" {
		if specFile, err = filepath.Abs(g.file); err != nil {
			return systemdunit.Daemon{}, "", err
		}
	}
	if g.stateDir != "" {
		if stateDir, err = filepath.Abs(g.stateDir); err != nil {
			return systemdunit.Daemon{}, "", err
		}
	}
	args := systemdunit.ServeArgs(dir, stateDir)
	if specFile != "" {
		args = append([]string{"--file", specFile}, args...)
	}
	// Where the daemon keeps its state, as kiln serve finds it.
	switch {
	case stateDir != "":
	case specFile != "":
		stateDir = filepath.Join(filepath.Dir(specFile), ".kiln")
	default:
		stateDir = filepath.Join(dir, ".kiln")
	}
	if pid, _, err := daemon.Running(stateDir); err == nil && pid > 0 {
		fmt.Fprintf(g.stderr, "kiln: a daemon already serves %s (PID %d): stop it (kiln -C %s stop) for the service to start\n", dir, pid, dir)
	}
	d := systemdunit.Daemon{
		Name: name, Dir: dir, Binary: bin, ServeArgs: args, User: u.Username, Home: u.HomeDir,
		Path: servicePath(g), Env: dockerEnv(), EnvFile: "/etc/default/" + strings.TrimSuffix(name, ".service"),
		LongestDrain: longestDrain(g, dir, specFile),
	}
	return d, filepath.Join(f.unitDir, name), nil
}

// runAs is --user, else the owner of dir, else the user running kiln.
func (f *serviceFlags) runAs(dir string) (*user.User, error) {
	if f.user != "" {
		u, err := user.Lookup(f.user)
		if err != nil {
			return nil, fmt.Errorf("--user %s: %w", f.user, err)
		}
		return u, nil
	}
	if fi, err := os.Stat(dir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
				return u, nil
			}
		}
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("finding the user to run as (give --user): %w", err)
	}
	return u, nil
}

// servicePath is systemd's PATH for services, after the directories of go and git as
// found here (bakes run them), when those are elsewhere.
func servicePath(g *globals) string {
	dirs := strings.Split(systemdunit.DefaultPath, ":")
	var extra []string
	for _, prog := range []string{"go", "git"} {
		p, err := exec.LookPath(prog)
		if err != nil {
			fmt.Fprintf(g.stderr, "kiln: %s is not in PATH here: the service's bakes cannot run it unless its PATH is changed\n", prog)
			continue
		}
		if d := filepath.Dir(p); !slices.Contains(dirs, d) && !slices.Contains(extra, d) {
			extra = append(extra, d)
		}
	}
	return strings.Join(append(extra, dirs...), ":")
}

// dockerEnv are the variables the Docker client reads (client.FromEnv) set here.
func dockerEnv() []string {
	var out []string
	for _, k := range []string{"DOCKER_HOST", "DOCKER_API_VERSION", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// longestDrain is the longest drain_timeout of the services of the spec in dir (or
// specFile); the default drain when it has none, or cannot be read.
func longestDrain(g *globals, dir, specFile string) (longest time.Duration) {
	longest = spec.DefaultDrainTimeout
	path := specFile
	if path == "" {
		var err error
		if path, err = spec.Find(dir); err != nil {
			return longest
		}
	}
	cfg, diags := spec.Load(path, spec.Options{})
	if diags.HasErrors() {
		fmt.Fprintf(g.stderr, "kiln: %s has errors (kiln validate shows them): TimeoutStopSec assumes drains of %s\n", path, longest)
		return longest
	}
	for _, s := range cfg.Services {
		longest = max(longest, s.DrainTimeout)
	}
	return longest
}

// asRoot says what to do about a permission error.
func asRoot(err error) string {
	if errors.Is(err, fs.ErrPermission) {
		return " (run it as root, with sudo, or give --unit-dir)"
	}
	return ""
}
