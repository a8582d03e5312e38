package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/server"
)

func newPlanCmd(g *globals) *cobra.Command {
	var asJSON, detailed, prune bool
	cmd := &cobra.Command{
		Use:   "plan [SERVICE...]",
		Short: "Show which servers apply would create, replace and destroy, and why",
		Long: `Plan bakes the images the spec's services run (from the cache when nothing changed),
compares the desired state with the servers the runtime reports, and prints what apply
would do: "+" create, "+/-" replace with the reason (image digest changed, env changed,
...), "-" destroy. Servers are never changed in place. Plan changes nothing.`,
		Example: `  kiln plan
  kiln plan -json
  kiln plan -detailed-exitcode     # exit 0: no changes, 2: changes, 1: error`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.client()
			if err != nil {
				return err
			}
			progress := g.stderr
			if asJSON {
				progress = io.Discard
			}
			d, err := g.resolve(ctx, args, progress, true)
			if err != nil {
				return err
			}
			raw, err := c.Plan(ctx, api.PlanRequest{Services: d.services, Secrets: d.secrets, Prune: prune, Runtime: d.runtime})
			if err != nil {
				return err
			}
			var resp server.PlanResponse
			if err := json.Unmarshal(raw, &resp); err != nil {
				return fmt.Errorf("reading the plan: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				enc.Encode(resp.Plan)
			} else {
				fmt.Fprint(g.stdout, resp.Text)
			}
			if detailed && resp.Plan.Changes {
				return exitError{2}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 2 when there are changes, 0 when none, 1 on error")
	cmd.Flags().BoolVar(&prune, "prune", false, "include the removal of services the spec no longer declares")
	addVarFlag(g, cmd.Flags())
	return cmd
}
