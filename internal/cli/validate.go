package cli

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/spec"
)

func newValidateCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the spec and report every problem in it",
		Long: `Validate parses kiln.hcl, evaluates its variables and checks every block: unknown
or mistyped attributes, references to undeclared variables or images, duplicate names,
missing source files. It reports all problems at once, each with its file:line:column.`,
		Example: `  kiln validate
  kiln validate -json              # the shape of terraform validate -json
  kiln validate -var version=1.2.0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := g.specPath()
			if err != nil {
				return err
			}
			vars, err := g.varValues()
			if err != nil {
				return err
			}
			cfg, diags := spec.Load(path, spec.Options{Vars: vars, Confine: g.confine})
			if asJSON {
				if err := spec.WriteJSON(g.stdout, cfg.Files, diags); err != nil {
					return err
				}
			} else if len(diags) > 0 {
				g.printDiags(cfg.Files, diags)
			}
			if diags.HasErrors() {
				if !asJSON {
					fmt.Fprintf(g.stderr, "%s is not valid: %s.\n", path, countProblems(diags))
				}
				return exitError{1}
			}
			if !asJSON {
				fmt.Fprintf(g.stdout, "Success! %s is valid (%d images, %d variables).\n", path, len(cfg.Images), len(cfg.Variables))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	addVarFlag(g, cmd.Flags())
	return cmd
}

func countProblems(diags hcl.Diagnostics) string {
	n := len(diags.Errs())
	if n == 1 {
		return "1 error"
	}
	return fmt.Sprintf("%d errors", n)
}
