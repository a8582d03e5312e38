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
	var takeover bool
	var created int64
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
			c := time.Now()
			if created != 0 {
				c = time.Unix(0, created)
			}
			return runDoor(cmd.Context(), g, dir, build, c, takeover)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the door's `DIR`: configuration, control socket, certificates")
	cmd.Flags().StringVar(&build, "build", "", "the build of kiln this is, as the daemon names it")
	cmd.Flags().BoolVar(&takeover, "takeover", false, "take the listeners of the door serving DIR (an upgrade), without refusing a connection")
	cmd.Flags().Int64Var(&created, "created", 0, "when this door's container was made (unix ns): of two doors, the later is the newer")
	return cmd
}

// runDoor serves the door of dir until ctx ends, then lets requests in flight finish.
// With takeover, it first takes the listeners and configuration of the door serving
// dir (older than created), which stops accepting once this one serves them.
func runDoor(ctx context.Context, g *globals, dir, build string, created time.Time, takeover bool) error {
	log := slog.New(slog.NewTextHandler(g.stderr, nil))
	access := slog.New(slog.NewJSONHandler(g.stdout, nil))
	control := filepath.Join(dir, door.SocketFile)
	if newer(ctx, control, created) {
		// A door of an older container, started again by the engine while a newer one
		// serves: it leaves the newer alone, and waits to be removed.
		log.Warn("a newer front door serves this directory; this one waits to be removed", "dir", dir)
		<-ctx.Done()
		return nil
	}
	cfg, err := door.Load(dir)
	if err != nil {
		return err
	}
	opts := door.Options{Dir: dir, Log: log, AccessLog: access}
	var tk *door.Takeover
	if takeover {
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		tk, err = door.TakeOver(tctx, filepath.Join(dir, door.HandoffFile), created)
		cancel()
		if err != nil {
			log.Warn("taking over from the running door failed; listening anew", "error", err)
		} else {
			opts.Inherit, cfg = tk.Listeners, tk.Config
		}
	}
	s := door.New(opts)
	defer s.Shutdown()
	// What it served before it stopped (or what the replaced door served), at once; an
	// address still taken (a reboot, a door that does not hand over) is tried again
	// every second, while the daemon may configure it meanwhile.
	for len(cfg.Services) > 0 {
		if err = s.Apply(ctx, cfg); err == nil || errors.Is(err, door.ErrStale) {
			break
		}
		if tk != nil {
			tk.Abort()
			tk = nil
		}
		log.Error("the saved configuration cannot be served yet; trying again in 1s", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	if tk != nil {
		if err := tk.Done(); err != nil {
			log.Warn("telling the replaced door to stop accepting", "error", err)
		}
	}
	handedOff, err := door.ServeHandoff(ctx, filepath.Join(dir, door.HandoffFile), s, created)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	cctx, stopControl := context.WithCancel(ctx)
	defer stopControl()
	go func() { errc <- door.ServeControl(cctx, control, door.Control(s, build, created, handedOff)) }()
	log.Info("front door serving", "dir", dir, "build", build, "services", len(s.Config().Services), "took_over", tk != nil)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return fmt.Errorf("kiln door: %w", err)
	case <-handedOff:
		// Its listeners are a newer door's: it waits to be stopped (exiting would
		// have the engine start it again).
		log.Info("front door handed over to a newer one; waiting to be stopped")
		stopControl() // its socket's path is the newer door's
		<-ctx.Done()
		return nil
	}
}

// newer reports whether a door made after created answers on the control socket.
func newer(ctx context.Context, socket string, created time.Time) bool {
	c := door.Dial(socket)
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.Status(sctx)
	return err == nil && st.Created.After(created)
}
