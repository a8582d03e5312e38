package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/driver"
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
// itself) when they are inline, else a client of the project's door process, started
// by the runtime if it does not answer. A running door of another build (an upgrade
// of kiln) is replaced by one of this build, which takes its listening sockets over
// while both run: no connection is refused; the old one then stops once its requests
// have finished.
func openDoor(ctx context.Context, drv driver.Driver, placement, stateDir, project string, notes io.Writer) (door.Plane, error) {
	host, ok := drv.(driver.DoorHost)
	switch {
	case placement != DoorAuto && placement != DoorInline:
		return nil, fmt.Errorf("--door %q: the front doors run apart (\"\", the default) or inline (\"inline\")", placement)
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
