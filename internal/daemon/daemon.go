package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/secret"
	"github.com/kiln-build/kiln/internal/server"
	"github.com/kiln-build/kiln/internal/store"
)

// Options are what a daemon starts with: the flags kiln serve and kiln up bind, and
// what the CLI sets for them.
type Options struct {
	// StateDir is the project's state directory (.kiln), already prepared.
	StateDir string
	// Listen is --listen: the API's address; "" for the remembered one or the default.
	Listen string
	// Log receives the daemon's log at Level and above (nothing when nil).
	Log   io.Writer
	Level slog.Level
	// Notes receives what the user should know about the start (a changed address).
	Notes io.Writer
	// Driver runs the servers; nil for the one of Runtime. A driver given here is
	// closed by Start like one the daemon made, if it has Close() error.
	Driver driver.Driver
	// Runtime names the driver the daemon opens (registry.Default when ""), with
	// RuntimeOptions; RuntimeAt is where they were written (a spec's runtime block),
	// for errors. The project keeps the runtime its servers run on (RuntimeFile): a
	// daemon of another runtime refuses to start while any service is deployed.
	Runtime        string
	RuntimeOptions map[string]string
	RuntimeAt      string
	// Door is where the front doors run: DoorAuto (apart, when the runtime can host
	// them) or DoorInline.
	Door string
}

// Daemon is a daemon made by New and run by Start.
type Daemon struct {
	addr     string
	token    string
	addrFile string

	pid   *pidFile
	ln    *notifyListener
	drv   driver.Driver
	state *store.Store
	eng   *engine.Engine
	pipes *pipeline.Manager
	api   *server.Server

	startOnce sync.Once
	closeOnce sync.Once
	closed    atomic.Bool
}

// ErrStarted is Start's error when the daemon was started (or closed) before.
var ErrStarted = errors.New("the daemon was started already")

// New claims the state directory (its PID file, locked while the daemon lives), reads
// or creates the API tokens, the project id and the secret key, opens the API's
// listener, the driver (and checks that its runtime answers), the state store and the
// image store, makes the engine and the API server, and writes the API's address to
// .kiln/api.addr. It starts no goroutine: a client that finds the daemon waits in the
// listener's backlog until Start. It fails with an
// error wrapping ErrRunning when another daemon serves the state directory; on any
// error nothing is left open or claimed.
func New(ctx context.Context, o Options) (*Daemon, error) {
	d := &Daemon{addrFile: filepath.Join(o.StateDir, api.AddrFile)}
	pid, holder, _, err := claimPIDFile(o.StateDir)
	if errors.Is(err, ErrRunning) {
		return nil, alreadyRunning(d.addrFile, holder)
	}
	if err != nil {
		return nil, err
	}
	d.pid = pid
	if err := d.open(ctx, o); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// open is New once the PID file is held; what it opens is in d for Close.
func (d *Daemon) open(ctx context.Context, o Options) error {
	stateDir := o.StateDir
	// A daemon of an older kiln writes no PID file; its API still answers.
	if b, err := os.ReadFile(d.addrFile); err == nil {
		addr := strings.TrimSpace(string(b))
		if resp, err := (&http.Client{Timeout: time.Second}).Get(addr + "/healthz"); err == nil {
			resp.Body.Close()
			return alreadyRunning(d.addrFile, 0)
		}
	}
	token, err := loadSecret(filepath.Join(stateDir, api.TokenFile), 32, 0o600)
	if err != nil {
		return fmt.Errorf("API token: %w", err)
	}
	readOnly, err := loadSecret(filepath.Join(stateDir, api.ReadOnlyTokenFile), 32, 0o600)
	if err != nil {
		return fmt.Errorf("read-only API token: %w", err)
	}
	project, err := loadSecret(filepath.Join(stateDir, "project"), 6, 0o600)
	if err != nil {
		return fmt.Errorf("project id: %w", err)
	}
	notes := o.Notes
	if notes == nil {
		notes = io.Discard
	}
	ln, err := listenAPI(stateDir, o.Listen, notes)
	if err != nil {
		return err
	}
	d.ln = newNotifyListener(ln)
	d.addr, d.token = "http://"+ln.Addr().String(), token
	key, err := secret.LoadKey(filepath.Join(stateDir, secret.KeyFile))
	if err != nil {
		return err
	}
	logTo := o.Log
	if logTo == nil {
		logTo = io.Discard
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: o.Level}))
	if d.state, err = store.Open(ctx, filepath.Join(stateDir, "kiln.db")); err != nil {
		return err
	}
	if d.drv = o.Driver; d.drv == nil {
		if d.drv, err = openDriver(ctx, o, d.state, project, key.Digest, log); err != nil {
			return err
		}
	}
	images, err := imagestore.Open(stateDir)
	if err != nil {
		return err
	}
	wanted, err := wantsDoor(ctx, d.state)
	if err != nil {
		return err
	}
	plane, err := openDoor(ctx, d.drv, o.Door, stateDir, project, wanted, notes, log)
	if err != nil {
		return err
	}
	d.eng = engine.New(engine.Options{State: d.state, Images: images, Driver: d.drv, Owner: fmt.Sprintf("kiln (pid %d)", os.Getpid()),
		Project: project, StateDir: stateDir, Secrets: key, Log: log, Doors: plane})
	d.pipes = pipeline.New(pipeline.Options{Engine: d.eng, Metrics: d.eng, State: d.state, Images: images, Driver: d.drv,
		Project: project, StateDir: stateDir, Secrets: key, Log: log})
	d.eng.SetPipelines(d.pipes)
	d.api = server.New(d.eng, d.pipes, server.Tokens{Admin: token, ReadOnly: readOnly}, log)
	// Last: once it is there, clients find the daemon (and wait for Start).
	if err := atomicfile.Write(d.addrFile, []byte(d.addr+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the API's address: %w", err)
	}
	return nil
}

// Addr is the API's base URL, e.g. "http://127.0.0.1:7777". It answers once Start runs.
func (d *Daemon) Addr() string { return d.addr }

// Token is the API's admin bearer token (.kiln/token).
func (d *Daemon) Token() string { return d.token }

// Start runs the daemon and blocks until ctx ends or a part fails: it starts the
// engine (front doors, rollouts resumed, controller, pipelines) and the API server.
// Then it stops them in order: the API stops accepting requests; the engine stops (a
// rollout's step in flight ends, its servers removed when it was cut short, and the
// rollout stays running in the store to resume on the next start); the requests in
// flight end; the driver is closed (if it has Close() error), then the state store;
// api.addr and the PID file are removed and the lock released. It returns the first
// error of a part, nil when ctx ended. It may be called once; Close need not be called
// after it.
func (d *Daemon) Start(ctx context.Context) error {
	err := ErrStarted
	d.startOnce.Do(func() { err = d.run(ctx) })
	return err
}

func (d *Daemon) run(ctx context.Context) error {
	if d.closed.Load() {
		return ErrStarted
	}
	defer d.Close()
	// Each part has a context of its own, ended in the stop order below; ctx's values
	// reach them, its end does not.
	parts := context.WithoutCancel(ctx)
	engCtx, stopEngine := context.WithCancel(parts)
	apiCtx, stopAPI := context.WithCancel(parts)
	defer stopEngine()
	defer stopAPI()
	engDone, apiDone := make(chan error, 1), make(chan error, 1)
	go func() {
		// The engine and the pipelines stop together: a run's deploy is an apply.
		var wg sync.WaitGroup
		var pipeErr error
		wg.Go(func() { pipeErr = d.pipes.Start(engCtx) })
		err := d.eng.Start(engCtx)
		stopEngine() // an engine that failed stops the pipelines too
		wg.Wait()
		engDone <- cmpErr(err, partError("pipelines", pipeErr))
	}()
	go func() { apiDone <- d.api.Serve(apiCtx, d.ln) }()

	var first error
	engRunning, apiRunning := true, true
	select {
	case <-ctx.Done():
	case err := <-engDone:
		engRunning, first = false, partError("engine", err)
	case err := <-apiDone:
		apiRunning, first = false, partError("API server", err)
	}
	stopAPI()
	<-d.ln.closed // no new request from here on
	stopEngine()
	if engRunning {
		first = cmpErr(first, partError("engine", <-engDone))
	}
	if apiRunning {
		first = cmpErr(first, partError("API server", <-apiDone))
	}
	return first
}

// Close releases what New opened, in Start's order from the driver on: the driver, the
// state store, api.addr, the PID file and its lock. Start calls it on its way out; it
// is for a daemon that is never started. It is idempotent, and fails Start if it runs
// first.
func (d *Daemon) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		if d.ln != nil {
			d.ln.Close()
		}
		if c, ok := d.drv.(interface{ Close() error }); ok {
			err = partError("driver", c.Close())
		}
		if d.state != nil {
			err = cmpErr(err, partError("state", d.state.Close()))
		}
		os.Remove(d.addrFile)
		if d.pid != nil {
			d.pid.release()
		}
	})
	return err
}

// partError names the part an error came from; a part that stopped because it was
// told to returns no error.
func partError(part string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s: %w", part, err)
}

// cmpErr is the first of a and b that is not nil.
func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
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
	return fmt.Errorf("%w for this spec at %s%s: use it, or stop it with `kiln stop`", ErrRunning, addr, who)
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

// notifyListener is the API's listener; closed is closed once the API server has
// closed it, which it does first when it shuts down or fails.
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func newNotifyListener(ln net.Listener) *notifyListener {
	return &notifyListener{Listener: ln, closed: make(chan struct{})}
}

func (l *notifyListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}
