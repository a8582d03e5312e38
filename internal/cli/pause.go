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

func newPromoteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "promote SERVICE",
		Short: "Pass the current step of a service's canary",
		Long: `Promote ends the current step of SERVICE's canary as passed, whatever its analysis
says so far: the canary moves on to its next step (a pause step waits for this), or,
after the last, the new revision replaces the stable set. kiln status shows the
canary's step, its share and its figures beside the stable set's.`,
		Example: "  kiln status\n  kiln promote web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Promote(cmd.Context(), args[0], api.CanaryRequest{User: currentUser()}); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: the canary's step is promoted (kiln status %s shows the next)\n", args[0], args[0])
			return nil
		},
	}
}

func newAbortCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "abort SERVICE",
		Short: "Abort a service's canary: every request back to the stable set",
		Long: `Abort fails SERVICE's canary at once: the front door sends every request to the
stable set, the canary's servers are drained and destroyed, and the revision is
recorded as failed (rolled back, with auto_rollback).`,
		Example: "  kiln abort web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Abort(cmd.Context(), args[0], api.CanaryRequest{User: currentUser()}); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: the canary is aborted: every request goes to the stable set\n", args[0])
			return nil
		},
	}
}
