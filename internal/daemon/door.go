package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/store"
)

// Door placements (Options.Door).
const (
	// DoorAuto runs the doors apart when the runtime can host them (driver.DoorHost),
	// else in the daemon.
	DoorAuto = ""
	// DoorInline serves the doors in the daemon's process: they stop with it.
	DoorInline = "inline"
)

// doorStart bounds how long a door process may take to answer once started.
const doorStart = 15 * time.Second

// openDoor returns the door the engine configures: nil (the engine serves the doors
// itself) when they are inline, else the project's door process as a hostedDoor. A
// door that ran (its socket is there) is adopted at once; else one is started now if
// a service of the project listens (wanted), or later when one gets a front door.
func openDoor(ctx context.Context, drv driver.Driver, placement, stateDir, project string, wanted bool, notes io.Writer, log *slog.Logger) (door.Plane, error) {
	host, ok := drv.(driver.DoorHost)
	switch {
	case placement != DoorAuto && placement != DoorInline:
		return nil, fmt.Errorf("--door %q: the front doors run apart (\"\", the default) or inline (\"inline\")", placement)
	case !ok && driver.CapabilitiesOf(drv).Traffic:
		if sh, ok := drv.(driver.ServiceHost); ok {
			// The runtime carries the traffic (a Kubernetes Service); the daemon's own
			// door serves too, where it reaches the servers.
			return newServicePlane(door.New(door.Options{Log: log, Dir: filepath.Join(stateDir, "door")}), sh, project, log), nil
		}
		return nil, nil
	case placement == DoorInline || !ok:
		return nil, nil
	}
	dir := filepath.Join(stateDir, "door")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("the front door's directory: %w", err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	h := &hostedDoor{
		start: func(ctx context.Context) (*door.Client, error) { return startDoor(ctx, host, dir, project, notes) },
		remove: func(ctx context.Context) error {
			if err := host.RemoveDoor(ctx, project); err != nil {
				return err
			}
			// Nothing of it is left to serve or adopt: a door started later begins
			// afresh (at generation 0, as the daemon's registry may).
			for _, f := range []string{door.SocketFile, door.HandoffFile, door.ConfigFile} {
				if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		},
	}
	// A door that ran is there to adopt (its socket stays until it is removed as
	// above), however slow it is to answer now.
	_, err = os.Stat(filepath.Join(dir, door.SocketFile))
	if err == nil || wanted {
		if h.c, err = h.start(ctx); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// wantsDoor reports whether a service of the state has a front door: its current
// revision listens somewhere. A revision that cannot be read counts as one that does.
func wantsDoor(ctx context.Context, state *store.Store) (bool, error) {
	services, err := state.Services(ctx)
	if err != nil {
		return false, err
	}
	for _, s := range services {
		r, err := state.Revision(ctx, s.Name, s.Current)
		if err != nil {
			return true, nil
		}
		var svc api.Service
		if json.Unmarshal([]byte(r.Spec), &svc) != nil || svc.Listen != "" {
			return true, nil
		}
	}
	return false, nil
}

// startDoor returns a client of the project's door process, started by the runtime if
// it does not answer. A running door of another build (an upgrade of kiln) is replaced
// by one of this build, which takes its listening sockets over while both run: no
// connection is refused; the old one then stops once its requests have finished.
func startDoor(ctx context.Context, host driver.DoorHost, dir, project string, notes io.Writer) (*door.Client, error) {
	c := door.Dial(filepath.Join(dir, door.SocketFile))
	bin, build, err := executable()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	st, err := c.Status(sctx)
	cancel()
	if err == nil && st.Build == build {
		return c, nil
	}
	upgrade := err == nil
	if upgrade {
		fmt.Fprintf(notes, "kiln: the front door runs another build of kiln (%s); replacing it with this one (%s), which takes its sockets over\n", st.Build, build)
	}
	spec := driver.DoorSpec{Project: project, Dir: dir, Binary: bin, Build: build, User: fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())}
	if err := host.EnsureDoor(ctx, spec); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(doorStart)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err = c.Status(sctx)
		cancel()
		if err == nil && st.Version == door.Version && st.Build == build {
			if upgrade {
				if err := host.RetireDoors(ctx, project, build); err != nil {
					fmt.Fprintf(notes, "kiln: the previous front door could not be removed (%v); `docker rm -f` it\n", err)
				}
			}
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("the front door (container kiln-door-%s-…) did not answer within %s: see `docker logs` of it: %v", project, doorStart, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostedDoor is the project's door process as the engine's plane. Once no service
// has a front door (the project's last service destroyed) the process is removed, so
// that nothing of the project is left running; it is started again when a service
// gets one. Its methods are safe for concurrent use; pushes are not serialized (one
// may wait for a door to drain).
type hostedDoor struct {
	start  func(context.Context) (*door.Client, error)
	remove func(context.Context) error

	mu   sync.Mutex
	c    *door.Client // nil while no door process runs
	last int64        // the newest generation sent
}

var _ door.Plane = (*hostedDoor)(nil)

// client is the running door's client, nil if none runs and start is false. A
// configuration older than one sent before (gen, when not 0) starts no door: it was
// overtaken, perhaps by the one that removed the door.
func (h *hostedDoor) client(ctx context.Context, gen int64, start bool) (*door.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c == nil && start && gen != 0 && gen < h.last {
		return nil, fmt.Errorf("%w (%d < %d)", door.ErrStale, gen, h.last)
	}
	h.last = max(h.last, gen)
	if h.c == nil && start {
		c, err := h.start(ctx)
		if err != nil {
			return nil, err
		}
		h.c = c
	}
	return h.c, nil
}

// Apply sends cfg to the door, started first if cfg has a service and none runs; a
// cfg with none is served (the door closes its listeners, letting requests finish)
// and then the process is removed, unless a newer configuration came meanwhile. A door
// that no longer answers (its container removed by hand, or half removed) is started
// again and sent cfg once more.
func (h *hostedDoor) Apply(ctx context.Context, cfg door.Config) error {
	c, err := h.client(ctx, cfg.Generation, len(cfg.Services) > 0)
	if err != nil || c == nil {
		return err
	}
	err = c.Apply(ctx, cfg)
	if err != nil && !errors.Is(err, door.ErrStale) && ctx.Err() == nil {
		if c, err = h.restart(ctx, c, cfg.Generation); err == nil {
			err = c.Apply(ctx, cfg)
		}
	}
	if err != nil || len(cfg.Services) > 0 {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last != cfg.Generation || h.c != c {
		return nil
	}
	// Not cut short by the caller going away: a half-removed door would be left.
	if err := h.remove(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("removing the front door, which no service has any more: %w", err)
	}
	c.Close()
	h.c = nil
	return nil
}

// restart starts the door again if failed is still the client in use and the door
// does not answer, and returns the client to use; a configuration overtaken
// meanwhile is stale.
func (h *hostedDoor) restart(ctx context.Context, failed *door.Client, gen int64) (*door.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen < h.last {
		return nil, fmt.Errorf("%w (%d < %d)", door.ErrStale, gen, h.last)
	}
	if h.c != nil && h.c != failed {
		return h.c, nil
	}
	c, err := h.start(ctx)
	if err != nil {
		return nil, err
	}
	h.c = c
	return c, nil
}

// Config is what the door serves: nothing while none runs.
func (h *hostedDoor) Config(ctx context.Context) (door.Config, error) {
	if c, _ := h.client(ctx, 0, false); c != nil {
		return c.Config(ctx)
	}
	return door.Config{}, nil
}

// Check reports whether the door could listen on addr: while none runs, whether the
// address is free (the door shares the host's network).
func (h *hostedDoor) Check(ctx context.Context, addr string) error {
	if c, _ := h.client(ctx, 0, false); c != nil {
		return c.Check(ctx, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// Drain waits for the requests in flight to addrs: none while no door runs.
func (h *hostedDoor) Drain(ctx context.Context, service string, addrs []string) error {
	if c, _ := h.client(ctx, 0, false); c != nil {
		return c.Drain(ctx, service, addrs)
	}
	return nil
}

// Stats are the door's counters: none while no door runs.
func (h *hostedDoor) Stats(ctx context.Context) (map[string]door.ServiceStats, error) {
	if c, _ := h.client(ctx, 0, false); c != nil {
		return c.Stats(ctx)
	}
	return map[string]door.ServiceStats{}, nil
}

// executable is this program's path and build: a digest of its file.
func executable() (string, string, error) {
	bin, err := os.Executable()
	if err != nil {
		return "", "", fmt.Errorf("finding kiln's own binary for the front door: %w", err)
	}
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return "", "", err
	}
	f, err := os.Open(bin)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", err
	}
	return bin, hex.EncodeToString(h.Sum(nil))[:16], nil
}
