package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
)

// Labels kiln puts on every container it creates. They are the only state the driver
// keeps: List and a restarted kiln read everything back from them.
const (
	LabelManaged  = "dev.kiln.managed" // "true"
	LabelProject  = "dev.kiln.project"
	LabelService  = "dev.kiln.service"
	LabelRevision = "dev.kiln.revision"
	LabelSpecHash = "dev.kiln.spec-hash"
	LabelImage    = "dev.kiln.image" // manifest digest
	LabelPort     = "dev.kiln.port"
	LabelSpec     = "dev.kiln.spec" // the ServerSpec as JSON
)

// Options configure a Driver. The zero value is usable.
type Options struct {
	// Host is the engine's address, e.g. "unix:///var/run/docker.sock". Empty means
	// what the docker CLI uses: DOCKER_HOST (and DOCKER_TLS_VERIFY, DOCKER_CERT_PATH,
	// DOCKER_API_VERSION), else the local socket.
	Host string
	// StopTimeout is how long Destroy waits after SIGTERM before killing; default 10s.
	StopTimeout time.Duration
	// TmpfsSize caps each Writable tmpfs, in bytes; default 64 MiB.
	TmpfsSize int64
	// Digest is the function the caller computes ServerSpec.Digests with (a keyed
	// digest), with which Diff checks a server's environment against its recorded
	// spec. Without it, Diff does not check the environment.
	Digest func([]byte) string
	// SecretsDir is the host directory, on a tmpfs, where the files of
	// ServerSpec.Files are written for the engine to mount; default
	// /dev/shm/kiln-secrets. It must be on the engine's host (a local engine).
	SecretsDir string
}

// Driver runs servers as Docker containers. It is safe for concurrent use.
type Driver struct {
	cli  *client.Client
	opts Options

	netMu    sync.Mutex
	networks map[string]string // project network name → ID, once known to exist

	mu      sync.Mutex
	loading map[string]chan struct{} // digest → closed when its EnsureImage ends
	chains  map[string]bool          // chain IDs of layers the engine is known to hold
	seeded  bool                     // chains has been filled from the engine's kiln images
	// stopping: the engine's stops Stop sent that have not returned yet.
	stopping map[driver.ServerID]*stopping

	bg       sync.WaitGroup  // the stops Stop sent
	closed   context.Context // done once Close is called
	closeAll context.CancelFunc
}

var (
	_ driver.Driver      = (*Driver)(nil)
	_ driver.Capable     = (*Driver)(nil)
	_ driver.ImageLoader = (*Driver)(nil)
	_ driver.Watcher     = (*Driver)(nil)
	_ driver.Logger      = (*Driver)(nil)
	_ driver.Stopper     = (*Driver)(nil)
)

// New returns a driver for the engine opts names. It does not contact the engine (see
// Ping) and starts no goroutines; the API version is negotiated on first use.
func New(opts Options) (*Driver, error) {
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.TmpfsSize <= 0 {
		opts.TmpfsSize = 64 << 20
	}
	if opts.SecretsDir == "" {
		opts.SecretsDir = "/dev/shm/kiln-secrets"
	}
	copts := []client.Opt{client.FromEnv}
	if opts.Host != "" {
		copts = append(copts, client.WithHost(opts.Host))
	}
	cli, err := client.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("configuring the Docker client: %w", err)
	}
	closed, closeAll := context.WithCancel(context.Background())
	return &Driver{cli: cli, opts: opts, loading: map[string]chan struct{}{}, chains: map[string]bool{}, networks: map[string]string{},
		stopping: map[driver.ServerID]*stopping{}, closed: closed, closeAll: closeAll}, nil
}

// Option names of driver.Config.Options, each a field of Options.
const (
	OptionHost        = "host"         // Options.Host
	OptionStopTimeout = "stop_timeout" // Options.StopTimeout, a duration ("10s")
	OptionTmpfsSize   = "tmpfs_size"   // Options.TmpfsSize, in bytes
	OptionSecretsDir  = "secrets_dir"  // Options.SecretsDir
)

// OptionNames are the driver's options.
var OptionNames = []string{OptionHost, OptionStopTimeout, OptionTmpfsSize, OptionSecretsDir}

// Open is the driver cfg describes (cfg.Digest, and the options above), once the
// engine answers: the error wraps driver.ErrUnavailable if it does not, and
// driver.ErrUnknownOption for an option it does not have. The Docker driver keeps no
// files of its own: cfg.StateDir is unused (secret files are on a tmpfs, SecretsDir).
func Open(ctx context.Context, cfg driver.Config) (*Driver, error) {
	if err := cfg.CheckOptions(OptionNames...); err != nil {
		return nil, err
	}
	opts := Options{Host: cfg.Options[OptionHost], SecretsDir: cfg.Options[OptionSecretsDir], Digest: cfg.Digest}
	var err error
	if opts.StopTimeout, err = cfg.Duration(OptionStopTimeout, 0); err != nil {
		return nil, err
	}
	if opts.TmpfsSize, err = cfg.Int(OptionTmpfsSize, 0); err != nil {
		return nil, err
	}
	d, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := d.Ping(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Name is "docker".
func (d *Driver) Name() string { return "docker" }

// Capabilities: kiln's security defaults are enforced on every container (Create
// refuses to go on when the engine drops a limit), and the engine reports execs,
// configuration and file changes, and tells when a stopped container's process has
// ended (Stop). Servers are created one at a time: no sets.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{
		ReadOnlyRoot: true, Tmpfs: true, PIDsLimit: true, MemoryLimit: true, CPULimit: true,
		NoPrivileges: true, ProjectNetwork: true, SecretFiles: true,
		LoadImages: true, Events: true, ExecEvents: true, ConfigDiff: true, FileDiff: true, Logs: true, Wait: true, Stop: true,
	}
}

// Ping checks that the engine answers; the error wraps driver.ErrUnavailable if not.
// A successful Ping also removes the secret files of containers that are gone (removed
// behind kiln's back, or while it was not running).
func (d *Driver) Ping(ctx context.Context) error {
	_, err := d.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err == nil {
		d.sweepSecretFiles(ctx)
	}
	return d.check(err)
}

// Close ends the stops Stop sent that are still waited for (the engine carries them
// on) and releases the client's connections. The driver must not be used afterwards.
func (d *Driver) Close() error {
	d.closeAll()
	d.bg.Wait()
	return d.cli.Close()
}

// check turns a failure to reach the engine into one that wraps driver.ErrUnavailable
// and says what to do; other errors are returned as they are.
func (d *Driver) check(err error) error {
	if err == nil || !client.IsErrConnectionFailed(err) {
		return err
	}
	return fmt.Errorf("%w: Docker engine at %s (start it, or set DOCKER_HOST to its address): %w",
		driver.ErrUnavailable, d.cli.DaemonHost(), err)
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// cleanupContext is for undoing work after ctx may have ended: it keeps ctx's values
// but not its cancellation, and bounds the cleanup instead.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

var errNotManaged = errors.New("container is not managed by kiln")
