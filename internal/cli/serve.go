package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/driver/docker"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/secret"
	"github.com/kiln-build/kiln/internal/server"
	"github.com/kiln-build/kiln/internal/store"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: API, dashboard, front doors, rollouts, pipelines",
		Long: `Serve runs kiln's daemon for the spec here, in the foreground: the HTTP API the other
verbs talk to (on loopback, with the bearer token in .kiln/token), the web dashboard on
the same address (sign in with that token, or with .kiln/token.readonly to only look),
the front door of every service, the controller that heals and watches for drift, and
the pipelines. On start it resumes interrupted rollouts and re-adopts running servers
without restarting them.`,
		Example: `  kiln serve
  kiln serve --listen 127.0.0.1:7000     # another API address (default: the address it had last time, else 127.0.0.1:7777, else a free port)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := g.state(nil)
			if err != nil {
				return err
			}
			d, err := startDaemon(cmd.Context(), daemonOptions{StateDir: dir, Listen: listen, Log: g.stderr, Level: slog.LevelInfo, Notes: g.stderr})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "kiln serve: API on %s (state in %s); Ctrl-C to stop\n", d.addr, dir)
			fmt.Fprintf(g.stderr, "dashboard: %s/ (sign in with the token in %s)\n", d.addr, filepath.Join(dir, api.TokenFile))
			return d.wait()
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", listenUsage)
	return cmd
}

// daemon is a running kiln serve.
type daemon struct {
	addr   string
	eng    *engine.Engine
	errc   chan error
	cancel context.CancelFunc
	state  *store.Store
	files  []string
	pid    *pidFile
}

// daemonOptions are what serve and up start a daemon with.
type daemonOptions struct {
	StateDir string
	Listen   string // --listen; "" for the remembered address or the default
	Log      io.Writer
	Level    slog.Level
	// Notes receives what the user should know about the start (a changed address).
	Notes io.Writer
}

// startDaemon starts the engine and the API for the state directory and returns once
// the API answers. It refuses to start if another daemon already serves it.
func startDaemon(ctx context.Context, o daemonOptions) (*daemon, error) {
	addrFile := filepath.Join(o.StateDir, api.AddrFile)
	pid, holder, _, err := claimPIDFile(o.StateDir)
	if errors.Is(err, errDaemonRunning) {
		return nil, alreadyRunning(addrFile, holder)
	}
	if err != nil {
		return nil, err
	}
	d, err := startDaemonClaimed(ctx, o, addrFile)
	if err != nil {
		pid.release()
		return nil, err
	}
	d.pid = pid
	return d, nil
}

// alreadyRunning is the refusal to start a second daemon for a state directory.
func alreadyRunning(addrFile string, pid int) error {
	addr := "an unknown address"
	if b, err := os.ReadFile(addrFile); err == nil && strings.TrimSpace(string(b)) != "" {
		addr = strings.TrimSpace(string(b))
	}
	who := ""
	if pid > 0 {
		who = fmt.Sprintf(" (PID %d)", pid)
	}
	return fmt.Errorf("a kiln daemon is already running for this spec at %s%s: use it, or stop it with `kiln stop`", addr, who)
}

// startDaemonClaimed is startDaemon once this process holds the PID file.
func startDaemonClaimed(ctx context.Context, o daemonOptions, addrFile string) (*daemon, error) {
	stateDir := o.StateDir
	// A daemon of an older kiln writes no PID file; its API still answers.
	if b, err := os.ReadFile(addrFile); err == nil {
		addr := strings.TrimSpace(string(b))
		if resp, err := (&http.Client{Timeout: time.Second}).Get(addr + "/healthz"); err == nil {
			resp.Body.Close()
			return nil, alreadyRunning(addrFile, 0)
		}
	}
	token, err := loadSecret(filepath.Join(stateDir, api.TokenFile), 32, 0o600)
	if err != nil {
		return nil, fmt.Errorf("API token: %w", err)
	}
	readOnly, err := loadSecret(filepath.Join(stateDir, api.ReadOnlyTokenFile), 32, 0o600)
	if err != nil {
		return nil, fmt.Errorf("read-only API token: %w", err)
	}
	project, err := loadSecret(filepath.Join(stateDir, "project"), 6, 0o600)
	if err != nil {
		return nil, fmt.Errorf("project id: %w", err)
	}
	notes := o.Notes
	if notes == nil {
		notes = io.Discard
	}
	ln, err := listenAPI(stateDir, o.Listen, notes)
	if err != nil {
		return nil, err
	}
	key, err := secret.LoadKey(filepath.Join(stateDir, secret.KeyFile))
	if err != nil {
		ln.Close()
		return nil, err
	}
	drv, err := docker.New(docker.Options{Digest: key.Digest})
	if err == nil {
		err = drv.Ping(ctx)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	st, err := store.Open(ctx, filepath.Join(stateDir, "kiln.db"))
	if err != nil {
		ln.Close()
		return nil, err
	}
	images, err := imagestore.Open(stateDir)
	if err != nil {
		ln.Close()
		st.Close()
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: o.Level}))
	eng := engine.New(engine.Options{State: st, Images: images, Driver: drv, Owner: fmt.Sprintf("kiln (pid %d)", os.Getpid()), Project: project, StateDir: stateDir, Secrets: key, Log: log})
	pipes := pipeline.New(pipeline.Options{Engine: eng, Metrics: eng, State: st, Images: images, Driver: drv, Project: project, StateDir: stateDir, Secrets: key, Log: log})
	eng.SetPipelines(pipes)
	ctx, cancel := context.WithCancel(ctx)
	d := &daemon{addr: "http://" + ln.Addr().String(), eng: eng, errc: make(chan error, 3), cancel: cancel, state: st}
	go func() { d.errc <- eng.Start(ctx) }()
	go func() { d.errc <- pipes.Start(ctx) }()
	go func() {
		d.errc <- server.New(eng, pipes, server.Tokens{Admin: token, ReadOnly: readOnly}, log).Serve(ctx, ln)
	}()
	if err := atomicfile.Write(addrFile, []byte(d.addr+"\n"), 0o600); err != nil {
		cancel()
		return nil, err
	}
	d.files = []string{addrFile}
	return d, nil
}

// wait blocks until the daemon stops (its context ends or a part fails).
func (d *daemon) wait() error {
	err := <-d.errc
	d.cancel()
	err = errors.Join(err, <-d.errc, <-d.errc) // the engine, the pipelines and the API
	for _, f := range d.files {
		os.Remove(f)
	}
	d.state.Close()
	if d.pid != nil {
		d.pid.release()
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// loadSecret reads a random identifier from path, creating it (n random bytes, hex,
// with mode perm) on first start: the API token, and the project id that scopes this
// state directory's servers.
func loadSecret(path string, n int, perm os.FileMode) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	t := hex.EncodeToString(buf)
	if err := atomicfile.Write(path, []byte(t+"\n"), perm); err != nil {
		return "", err
	}
	return t, nil
}

// mustToken reads the API token a daemon of stateDir created.
func mustToken(stateDir string) string {
	b, _ := os.ReadFile(filepath.Join(stateDir, api.TokenFile))
	return strings.TrimSpace(string(b))
}
