package cli

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
)

func newUpCmd(g *globals) *cobra.Command {
	var listen string
	var co consentOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the daemon here, bake and apply the spec, and show the URLs",
		Long: `Up is the one-command start: it runs kiln serve in the foreground, bakes the spec's
images, applies its services (rolling out only what changed), prints each service's
URL, and keeps serving until Ctrl-C. Servers keep running after kiln stops; the next
kiln up or kiln serve re-adopts them; kiln stop stops a daemon started elsewhere.

Like apply, up does not silently undo a rollback made with kiln rollback: if the spec
would replace one, it says so and stops, unless -auto-approve (apply the spec anyway)
or -keep-rollback (serve, and leave those services at their rollback) is given.`,
		Example: "  kiln up\n  kiln -C examples/hello up\n  kiln up --listen 127.0.0.1:7000   # another address for the API and the dashboard\n  kiln up -keep-rollback            # leave rolled-back services as they are",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dir, err := g.state(nil)
			if err != nil {
				return err
			}
			// The events are printed as they happen; the daemon logs only what goes wrong.
			d, err := startDaemon(ctx, daemonOptions{StateDir: dir, Listen: listen, Log: g.stderr, Level: slog.LevelWarn, Notes: g.stderr})
			if err != nil {
				return err
			}
			dep, err := g.resolve(ctx, nil, g.stderr, false)
			if err != nil {
				d.cancel()
				d.wait()
				return err
			}
			c := api.New(d.addr, mustToken(dir))
			services, err := g.consent(ctx, c, dep.services, dep.secrets, co)
			if err != nil {
				d.cancel()
				d.wait()
				return err
			}
			if len(services) > 0 {
				res, err := c.Apply(ctx, api.ApplyRequest{Services: services, Secrets: dep.secrets, Pipelines: dep.pipelines, Source: dep.source, Commit: dep.commit, User: currentUser()},
					func(e api.Event) { printEvent(g.stderr, e) })
				if err == nil {
					err = printResult(g.stdout, res)
				}
				if err != nil {
					fmt.Fprintf(g.stderr, "kiln up: %v\n", err)
				}
			}
			fmt.Fprintf(g.stderr, "dashboard: %s/ (sign in with the token in %s)\n", d.addr, filepath.Join(dir, api.TokenFile))
			fmt.Fprintf(g.stderr, "kiln is serving (API %s). Ctrl-C stops kiln; servers keep running (kiln destroy SERVICE removes them).\n", d.addr)
			return d.wait()
		},
	}
	addVarFlag(g, cmd.Flags())
	addConsentFlags(&co, cmd.Flags())
	cmd.Flags().StringVar(&listen, "listen", "", listenUsage)
	return cmd
}
