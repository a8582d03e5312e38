package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/daemon"
)

func newServeCmd(g *globals) *cobra.Command {
	var opts daemon.Options
	var rt runtimeFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: API, dashboard, front doors, rollouts, pipelines",
		Long: `Serve runs kiln's daemon for the spec here, in the foreground: the HTTP API the other
verbs talk to (on loopback, with the bearer token in .kiln/token), the web dashboard on
the same address (sign in with that token, or with .kiln/token.readonly to only look),
the configuration of every service's front door (the doors run apart, in a container
of kiln's own binary that the Docker engine keeps running: they outlive the daemon),
the controller that heals and watches for drift, and the pipelines. Servers run on the
runtime the spec's runtime block names (Docker when it names none; --runtime chooses
another). On start it resumes interrupted rollouts and re-adopts running servers
without restarting them.

Ctrl-C (or kiln stop) stops it in order: the API stops taking requests, a rollout's
step in flight ends (servers it had started but not admitted are removed) and the
rollout is left to resume on the next start, then the state is closed and .kiln/kiln.pid
removed. Servers and front doors keep serving. A second Ctrl-C exits at once; the next start still
resumes. Exit status 130 after Ctrl-C, 0 after kiln stop.`,
		Example: `  kiln serve
  kiln serve --listen 127.0.0.1:7000     # another API address (default: the address it had last time, else 127.0.0.1:7777, else a free port)
  kiln serve --runtime kubernetes --runtime-option namespace=shop --runtime-option registry=127.0.0.1:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dir, err := g.state(nil)
			if err != nil {
				return err
			}
			opts.StateDir, opts.Log, opts.Level, opts.Notes = dir, g.stderr, slog.LevelInfo, g.stderr
			if err := g.runtime(&opts, rt); err != nil {
				return err
			}
			d, err := daemon.New(ctx, opts)
			if err != nil {
				return err
			}
			noteInterrupt(ctx, daemonStopping)
			fmt.Fprintf(g.stderr, "kiln serve: API on %s (state in %s); Ctrl-C to stop\n", d.Addr(), dir)
			fmt.Fprintf(g.stderr, "dashboard: %s/ (sign in with the token in %s)\n", d.Addr(), filepath.Join(dir, api.TokenFile))
			return daemonExit(ctx, g, d.Start(ctx))
		},
	}
	addDaemonFlags(&opts, cmd.Flags())
	rt.add(cmd.Flags())
	return cmd
}

// daemonStopping is what a daemon verb says on Ctrl-C.
const daemonStopping = "stopping the daemon: no new API requests; a rollout's step in flight ends " +
	"(servers it started but did not admit are removed) and the rollout resumes on the next start; servers keep running"

// addDaemonFlags binds the flags of the verbs that run a daemon (serve, up) into opts.
func addDaemonFlags(opts *daemon.Options, fs *pflag.FlagSet) {
	fs.StringVar(&opts.Listen, "listen", "", listenUsage)
	fs.StringVar(&opts.Door, "door", daemon.DoorAuto, "where the front doors run: \"\" (apart, in a container the Docker engine keeps running, so that they outlive the daemon) or \"inline\" (in the daemon: they stop with it)")
}

// daemonExit is the end of a verb that ran a daemon until ctx ended, given what Start
// returned: exit status 130 after Ctrl-C, success after SIGTERM (kiln stop).
func daemonExit(ctx context.Context, g *globals, err error) error {
	if err != nil {
		return err
	}
	if interrupted(ctx) {
		fmt.Fprintf(g.stderr, "kiln: stopped (PID file and lock released); the next kiln serve or kiln up resumes what was interrupted\n")
		return exitError{130}
	}
	return nil
}

const listenUsage = "the API's and the dashboard's `ADDRESS` (loopback; default: the address it had last time (.kiln/" +
	daemon.ListenFile + "), else " + daemon.DefaultListen + ", else a free port)"

// runtimeFlags are --runtime and --runtime-option, of the verbs that run a daemon.
type runtimeFlags struct {
	name    string
	options []string
}

func (f *runtimeFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "runtime", "", "the `RUNTIME` servers run on: docker or kubernetes (default: the spec's runtime block, else docker)")
	fs.StringArrayVar(&f.options, "runtime-option", nil, "a `KEY=VALUE` option of the runtime, as in a runtime block (repeatable; with --runtime, instead of the block's)")
}

// runtime sets the daemon's runtime and its options: --runtime and --runtime-option
// when given, else the spec's runtime block (when there is a spec here), else the
// default. A spec with errors is reported and refused: its runtime cannot be known.
func (g *globals) runtime(opts *daemon.Options, f runtimeFlags) error {
	if f.name == "" && len(f.options) > 0 {
		return fmt.Errorf("--runtime-option needs --runtime: name the runtime it is an option of")
	}
	if f.name != "" {
		opts.Runtime, opts.RuntimeOptions = f.name, map[string]string{}
		for _, kv := range f.options {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--runtime-option %q: write it as KEY=VALUE", kv)
			}
			opts.RuntimeOptions[k] = v
		}
		return nil
	}
	if _, err := g.specPath(); err != nil {
		return nil // no spec here: the default runtime
	}
	cfg, err := g.loadSpecQuiet()
	if err != nil {
		return err
	}
	if cfg.Runtime != nil {
		opts.Runtime, opts.RuntimeOptions = cfg.Runtime.Name, cfg.Runtime.Options
		opts.RuntimeAt = cfg.Runtime.Range.String()
	}
	return nil
}
