package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
)

func newPauseCmd(g *globals) *cobra.Command {
	var maintenance string
	cmd := &cobra.Command{
		Use:   "pause SERVICE",
		Short: "Hold the requests of a service's front door (or answer them for maintenance)",
		Long: `Pause holds the new requests of SERVICE's front door until kiln resume: each waits up
to 30 s, then gets 503 with Retry-After; requests in flight finish. With --maintenance,
the door answers every request at once with 503 and the message. Servers keep running;
the pause lasts across restarts of the daemon and of the door, until kiln resume.`,
		Example: "  kiln pause web\n  kiln pause web --maintenance \"Back at 14:00.\"\n  kiln resume web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Pause(cmd.Context(), args[0], api.PauseRequest{Maintenance: maintenance}); err != nil {
				return err
			}
			if maintenance != "" {
				fmt.Fprintf(g.stdout, "%s: the front door answers 503 with the maintenance message (kiln resume %s to serve again)\n", args[0], args[0])
			} else {
				fmt.Fprintf(g.stdout, "%s: paused: the front door holds new requests (kiln resume %s to let them through)\n", args[0], args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&maintenance, "maintenance", "", "answer every request 503 with `MESSAGE` instead of holding it")
	return cmd
}

func newResumeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "resume SERVICE",
		Short:   "Let the requests of a paused service's front door through again",
		Example: "  kiln resume web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Resume(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: resumed: the front door serves again\n", args[0])
			return nil
		},
	}
}
