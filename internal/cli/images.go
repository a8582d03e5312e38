package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/imagestore"
	state "github.com/kiln-build/kiln/internal/store"
)

func newImagesCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List the images in the local image store",
		Long: `Images lists every image in the store: the newest bake of each name (marked
current) and earlier bakes kept until pruned.`,
		Example: `  kiln images
  kiln images -json
  kiln images prune`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			entries, err := store.Entries()
			if err != nil {
				return err
			}
			if asJSON {
				return writeEntriesJSON(g, entries)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tCURRENT\tSIZE\tCREATED\tREVISION")
			for i := len(entries) - 1; i >= 0; i-- { // newest bake first
				e := entries[i]
				cur := ""
				if e.Current {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, short(e.Digest.String()), cur,
					units.HumanSize(float64(e.Size)), e.Created.UTC().Format(time.DateTime), shortRev(e.Revision))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	cmd.AddCommand(newPruneCmd(g))
	return cmd
}

func shortRev(r string) string {
	if r == "" {
		return "-"
	}
	return r[:min(12, len(r))]
}

type entryJSON struct {
	Name     string    `json:"name"`
	Digest   string    `json:"digest"`
	Current  bool      `json:"current"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
	Revision string    `json:"revision,omitempty"`
	Source   string    `json:"source,omitempty"`
	Baked    time.Time `json:"baked"`
	SBOM     string    `json:"sbom,omitempty"`
}

func writeEntriesJSON(g *globals, entries []imagestore.Entry) error {
	out := []entryJSON{}
	for _, e := range entries {
		j := entryJSON{Name: e.Name, Digest: e.Digest.String(), Current: e.Current, Size: e.Size,
			Created: e.Created, Revision: e.Revision, Source: e.Source, Baked: e.Baked}
		if e.SBOM != (v1.Hash{}) {
			j.SBOM = e.SBOM.String()
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func newPruneCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove images nothing keeps, and their unused layers",
		Long: `Prune removes every image in the store that is neither the current bake of its name
nor the image of one of the last 10 revisions (or the current revision) of a deployed
service, then every blob (layer, config, SBOM) no remaining image uses. A rollback
therefore always finds its image.`,
		Example: "  kiln images prune",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			unlock, err := store.Lock(cmd.Context())
			if err != nil {
				return err
			}
			defer unlock()
			keep, err := g.keptImages(cmd.Context())
			if err != nil {
				return err
			}
			res, err := store.Prune(keep)
			if err != nil {
				return err
			}
			for _, e := range res.Images {
				fmt.Fprintf(g.stdout, "removed %s@%s\n", e.Name, e.Digest)
			}
			fmt.Fprintf(g.stderr, "pruned %d images, %d blobs, %s\n", len(res.Images), res.Blobs, units.HumanSize(float64(res.Bytes)))
			return nil
		},
	}
}

// openStore opens the image store of the spec here, without requiring the spec to be
// valid: listing images must work while the spec is being edited.
func (g *globals) openStore() (*imagestore.Store, error) {
	dir, err := g.state(nil)
	if err != nil {
		return nil, err
	}
	return imagestore.Open(dir)
}

// keptImages are the digests the deployment state needs: those of recent and current
// revisions. None when nothing was ever deployed from here.
func (g *globals) keptImages(ctx context.Context) (map[v1.Hash]bool, error) {
	dir, err := g.state(nil)
	if err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "kiln.db")
	if _, err := os.Stat(db); os.IsNotExist(err) {
		return nil, nil
	}
	st, err := state.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	digests, err := st.KeptImages(ctx, 10)
	if err != nil {
		return nil, err
	}
	keep := map[v1.Hash]bool{}
	for d := range digests {
		if h, err := v1.NewHash(d); err == nil {
			keep[h] = true
		}
	}
	return keep, nil
}
