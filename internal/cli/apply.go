package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
)

func newApplyCmd(g *globals) *cobra.Command {
	var detach, prune bool
	var co consentOptions
	cmd := &cobra.Command{
		Use:   "apply [SERVICE...]",
		Short: "Bake what changed and roll out a new revision of each changed service",
		Long: `Apply bakes the images the spec's services run, records a new revision of every
service whose settings or image changed, and rolls it out by replacing servers (never
changing them): rolling or blue-green, admitting each new server only once it is
healthy. If new servers do not become healthy within the progress deadline, the
rollout reverts to the previous revision (auto_rollback, on by default).

Apply waits until the outcome is known and exits non-zero if a rollout failed. Ctrl-C
while it waits stops following the rollout, not the rollout: the daemon carries on with
it (exit status 130).

A service rolled back with kiln rollback stays at that rollback until the spec is
applied over it on purpose: if the spec would replace such a revision, apply says so
and changes nothing, unless -auto-approve is given (on a terminal it asks, and only
"yes" applies). -keep-rollback applies the spec to the other services only.`,
		Example: `  kiln apply
  kiln apply -var version=1.2.0
  kiln apply web --detach          # return once the revision is recorded
  kiln apply --prune               # also destroy services no longer in the spec
  kiln apply -auto-approve         # even over a rollback made with kiln rollback`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := g.resolve(ctx, args, g.stderr, false)
			if err != nil {
				return err
			}
			if co.KeepRollback && prune {
				return errors.New("-keep-rollback cannot be combined with --prune, which would destroy the services it leaves out")
			}
			services, err := g.consent(ctx, c, d.services, d.secrets, co)
			if err != nil {
				return err
			}
			if len(services) == 0 {
				return nil // every service is kept at its rollback
			}
			// From here the rollouts are the daemon's: Ctrl-C only stops following them.
			noteInterrupt(ctx, "stopped following the rollout; it goes on in the daemon (kiln status, kiln events -f)")
			res, err := c.Apply(ctx, api.ApplyRequest{Services: services, Secrets: d.secrets, Pipelines: d.pipelines, Prune: prune, Source: d.source, Runtime: d.runtime,
				Commit: d.commit, User: currentUser(), Detach: detach}, func(e api.Event) { printEvent(g.stderr, e) })
			if err != nil && interrupted(ctx) {
				fmt.Fprintln(g.stderr, "kiln apply: interrupted; the rollout goes on in the daemon: follow it with `kiln status` or `kiln events -f`")
				return exitError{130}
			}
			if err != nil {
				return err
			}
			if err := printResult(g.stdout, res); err != nil {
				fmt.Fprintln(g.stderr, "See `kiln history SERVICE` and `kiln events`.")
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&detach, "detach", false, "return once the revisions are recorded, without waiting for the rollouts")
	cmd.Flags().BoolVar(&prune, "prune", false, "destroy services the daemon runs that the spec no longer declares")
	addVarFlag(g, cmd.Flags())
	addConsentFlags(&co, cmd.Flags())
	return cmd
}
