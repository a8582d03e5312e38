package cli

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
)

func newSBOMCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sbom IMAGE",
		Short: "Print the SBOM of a baked image (CycloneDX JSON)",
		Long: `Sbom prints the software bill of materials kiln wrote when it baked IMAGE: the Go
modules compiled into its binaries and every file its steps added, with their SHA-256.
IMAGE is a name (its current bake), NAME@DIGEST, or a digest prefix.`,
		Example: `  kiln sbom hello
  kiln sbom hello | jq '.components[] | select(.type=="library") | .purl'
  kiln sbom sha256:3f1c`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			e, err := store.Find(args[0])
			if err != nil {
				return err
			}
			if e.SBOM == (v1.Hash{}) {
				return fmt.Errorf("image %s@%s has no SBOM: bake it again", e.Name, e.Digest)
			}
			r, err := store.Blob(e.SBOM)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(g.stdout, r)
			return err
		},
	}
}
