package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/daemon"
)

func newStopCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the kiln daemon of the spec here (its servers keep running)",
		Long: `Stop ends the daemon (kiln up or kiln serve) of this spec's state directory: it
sends it SIGTERM, as Ctrl-C would, and waits until its API no longer answers and its
process has exited. Servers and their front doors keep serving (the doors run in a
container of their own); the next kiln up or kiln serve re-adopts both and resumes an
interrupted rollout.

The daemon is found through .kiln/kiln.pid, which it holds locked while it runs; a PID
file left by a daemon that died is removed. When no daemon runs, stop says so and
succeeds.`,
		Example: "  kiln stop\n  kiln -C examples/hello stop\n  kiln stop --timeout 2m",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := g.state(nil)
			if err != nil {
				return err
			}
			pid, stale, err := daemon.Running(dir)
			if err != nil {
				return err
			}
			if pid == 0 {
				if stale {
					fmt.Fprintf(g.stdout, "No kiln daemon is running for this spec (removed a stale %s).\n", filepath.Join(dir, daemon.PIDFile))
				} else {
					fmt.Fprintln(g.stdout, "No kiln daemon is running for this spec.")
				}
				return nil
			}
			addr := ""
			if b, err := os.ReadFile(filepath.Join(dir, api.AddrFile)); err == nil {
				addr = strings.TrimSpace(string(b))
			}
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				if errors.Is(err, syscall.ESRCH) {
					fmt.Fprintf(g.stdout, "The kiln daemon (PID %d) has already exited.\n", pid)
					return nil
				}
				return fmt.Errorf("stopping the kiln daemon (PID %d): %w", pid, err)
			}
			start := time.Now()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				if still, _, err := daemon.Running(dir); err == nil && still == 0 && !answers(addr) {
					break
				}
				if time.Since(start) > timeout {
					return fmt.Errorf("the kiln daemon (PID %d) did not stop within %s of SIGTERM (a rollout may be finishing); "+
						"wait and run kiln stop again, or end it with kill -9 %d (servers keep running; the next start resumes)", pid, timeout, pid)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-tick.C:
				}
			}
			where := ""
			if addr != "" {
				where = ", API " + addr
			}
			fmt.Fprintf(g.stdout, "Stopped the kiln daemon of this spec (PID %d%s) in %s. Its servers keep running; kiln up or kiln serve starts it again.\n",
				pid, where, time.Since(start).Round(10*time.Millisecond))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the daemon to exit")
	return cmd
}

// answers reports whether a kiln API answers at addr.
func answers(addr string) bool {
	if addr == "" {
		return false
	}
	resp, err := (&http.Client{Timeout: 500 * time.Millisecond}).Get(addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}
