package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/registry"
	"github.com/kiln-build/kiln/internal/store"
)

// RuntimeFile, in the state directory, names the runtime the project's servers run on.
// A project from before it runs on Docker.
const RuntimeFile = "runtime"

// ErrOtherRuntime: the daemon was asked for another runtime than the one the project's
// deployed services run on.
var ErrOtherRuntime = errors.New("the project's services run on another runtime")

// openDriver opens the driver of o.Runtime with its options, its files under the state
// directory, once it has checked that the project's deployed services run there; then
// records the runtime. Open checks that the runtime answers (driver.ErrUnavailable if
// not).
func openDriver(ctx context.Context, o Options, state *store.Store, project string, digest func([]byte) string, log *slog.Logger) (driver.Driver, error) {
	name := cmp.Or(o.Runtime, registry.Default)
	file := filepath.Join(o.StateDir, RuntimeFile)
	recorded := registry.Default
	switch b, err := os.ReadFile(file); {
	case err == nil:
		recorded = cmp.Or(strings.TrimSpace(string(b)), registry.Default)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading the project's runtime: %w", err)
	}
	if recorded != name {
		services, err := state.Services(ctx)
		if err != nil {
			return nil, err
		}
		if len(services) > 0 {
			names := make([]string, len(services))
			for i, s := range services {
				names[i] = s.Name
			}
			return nil, fmt.Errorf("%w: this project's services (%s) run on %s (%s), and kiln was asked for %s%s. kiln does not move servers between runtimes: "+
				"serve the project on %s and kiln destroy each service, then start kiln on %s",
				ErrOtherRuntime, strings.Join(names, ", "), recorded, file, name, at(o.RuntimeAt), recorded, name)
		}
	}
	cfg := driver.Config{Project: project, StateDir: filepath.Join(o.StateDir, "driver"), Digest: digest, Options: o.RuntimeOptions, Log: log}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("the runtime's state directory: %w", err)
	}
	d, err := registry.Open(ctx, name, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, at(o.RuntimeAt))
	}
	if recorded != name || !exists(file) {
		if err := atomicfile.Write(file, []byte(name+"\n"), 0o600); err != nil {
			driver.Close(d)
			return nil, fmt.Errorf("recording the project's runtime: %w", err)
		}
	}
	return d, nil
}

// at is " (runtime block at WHERE)" when where is known.
func at(where string) string {
	if where == "" {
		return ""
	}
	return " (runtime block at " + where + ")"
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
