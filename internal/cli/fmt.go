package cli

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/spec"
)

func newFmtCmd(g *globals) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "fmt [FILE...]",
		Short: "Rewrite spec files in canonical format",
		Long: `Fmt rewrites HCL spec files in the canonical layout (aligned equals signs, consistent
indentation), like terraform fmt. With -check it changes nothing and exits with status 3
if any file needs formatting, for CI. JSON specs are left as they are.`,
		Example: `  kiln fmt
  kiln fmt -check               # in CI: exit 3 if kiln.hcl is not formatted
  kiln fmt deploy/kiln.hcl`,
		RunE: func(cmd *cobra.Command, args []string) error {
			files := args
			if len(files) == 0 {
				p, err := g.specPath()
				if err != nil {
					return err
				}
				files = []string{p}
			}
			unformatted := 0
			for _, f := range files {
				if strings.HasSuffix(f, ".json") {
					continue
				}
				src, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				out, diags := spec.Format(f, src)
				if diags.HasErrors() {
					g.printDiags(nil, diags)
					return exitError{1}
				}
				if bytes.Equal(src, out) {
					continue
				}
				unformatted++
				fmt.Fprintln(g.stdout, f)
				if check {
					continue
				}
				info, err := os.Stat(f)
				if err != nil {
					return err
				}
				if err := atomicfile.Write(f, out, info.Mode().Perm()); err != nil {
					return fmt.Errorf("writing %s: %w", f, err)
				}
			}
			if check && unformatted > 0 {
				fmt.Fprintf(g.stderr, "%d file(s) need formatting: run `kiln fmt`\n", unformatted)
				return exitError{3}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "change nothing; exit 3 if a file is not formatted")
	return cmd
}
