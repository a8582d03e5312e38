package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/door"
)

func newDoorCmd(g *globals) *cobra.Command {
	var dir, build string
	cmd := &cobra.Command{
		Use:    "door --dir DIR",
		Short:  "Run a project's front doors (started by the daemon, in a container of its own)",
		Hidden: true,
		Long: `Door serves the front doors of a project's services: the configuration in DIR/config.json,
which the daemon sends over the control socket DIR/door.sock. It keeps serving what it
was last given while the daemon is away, checking the servers' health itself. The daemon
starts it in a container that the Docker engine restarts; it is not run by hand.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("kiln door: --dir is required")
			}
			return runDoor(cmd.Context(), g, dir, build)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the door's `DIR`: configuration, control socket, certificates")
	cmd.Flags().StringVar(&build, "build", "", "the build of kiln this is, as the daemon names it")
	return cmd
}

// runDoor serves the door of dir until ctx ends, then lets requests in flight finish.
func runDoor(ctx context.Context, g *globals, dir, build string) error {
	log := slog.New(slog.NewTextHandler(g.stderr, nil))
	access := slog.New(slog.NewJSONHandler(g.stdout, nil))
	cfg, err := door.Load(dir)
	if err != nil {
		return err
	}
	s := door.New(door.Options{Dir: dir, Log: log, AccessLog: access})
	defer s.Shutdown()
	control := make(chan error, 1)
	go func() { control <- door.ServeControl(ctx, filepath.Join(dir, door.SocketFile), door.Control(s, build)) }()
	// What it served before it stopped, at once; an address still taken (a reboot, the
	// door it replaces) is tried again every second, while the daemon may configure it.
	for len(cfg.Services) > 0 {
		if err = s.Apply(ctx, cfg); err == nil || errors.Is(err, door.ErrStale) {
			break
		}
		log.Error("the saved configuration cannot be served yet; trying again in 1s", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case err := <-control:
			return err
		case <-time.After(time.Second):
		}
	}
	log.Info("front door serving", "dir", dir, "build", build, "services", len(s.Config().Services))
	select {
	case <-ctx.Done():
		return nil
	case err := <-control:
		return fmt.Errorf("kiln door: %w", err)
	}
}
