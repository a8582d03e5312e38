package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/daemon"
)

func newUpCmd(g *globals) *cobra.Command {
	var opts daemon.Options
	var rt runtimeFlags
	var co consentOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the daemon here, bake and apply the spec, and show the URLs",
		Long: `Up is the one-command start: it runs kiln serve in the foreground, bakes the spec's
images, applies its services (rolling out only what changed), prints each service's
URL, and keeps serving until Ctrl-C. Servers keep running after kiln stops; the next
kiln up or kiln serve re-adopts them; kiln stop stops a daemon started elsewhere.

Ctrl-C stops the daemon as it stops kiln serve: a rollout's step in flight ends and the
rollout resumes on the next start. A second Ctrl-C exits at once. Exit status 130.

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
			opts.StateDir, opts.Log, opts.Level, opts.Notes = dir, g.stderr, slog.LevelWarn, g.stderr
			if err := g.runtime(&opts, rt); err != nil {
				return err
			}
			d, err := daemon.New(ctx, opts)
			if err != nil {
				return err
			}
			noteInterrupt(ctx, daemonStopping)
			// runCtx also ends when up fails before serving.
			runCtx, stopDaemon := context.WithCancel(ctx)
			defer stopDaemon()
			done := make(chan error, 1)
			go func() { done <- d.Start(runCtx) }()
			fail := func(err error) error {
				stopDaemon()
				<-done
				return err
			}
			dep, err := g.resolve(ctx, nil, g.stderr, false)
			if err != nil {
				return fail(err)
			}
			c := api.New(d.Addr(), d.Token())
			services, err := g.consent(ctx, c, dep.services, dep.secrets, co)
			if err != nil {
				return fail(err)
			}
			if len(services) > 0 {
				res, err := c.Apply(ctx, api.ApplyRequest{Services: services, Secrets: dep.secrets, Pipelines: dep.pipelines, Source: dep.source, Commit: dep.commit, User: currentUser(), Runtime: dep.runtime},
					func(e api.Event) { printEvent(g.stderr, e) })
				if err == nil {
					err = printResult(g.stdout, res)
				}
				if err != nil && ctx.Err() == nil {
					fmt.Fprintf(g.stderr, "kiln up: %v\n", err)
				}
			}
			if ctx.Err() == nil {
				fmt.Fprintf(g.stderr, "dashboard: %s/ (sign in with the token in %s)\n", d.Addr(), filepath.Join(dir, api.TokenFile))
				fmt.Fprintf(g.stderr, "kiln is serving (API %s). Ctrl-C stops kiln; servers and front doors keep serving (kiln destroy SERVICE removes them).\n", d.Addr())
			}
			return daemonExit(ctx, g, <-done)
		},
	}
	addVarFlag(g, cmd.Flags())
	addConsentFlags(&co, cmd.Flags())
	addDaemonFlags(&opts, cmd.Flags())
	rt.add(cmd.Flags())
	return cmd
}
