package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/driver/docker"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
)

type bakeOptions struct {
	push   string
	load   bool
	asJSON bool
}

func newBakeCmd(g *globals) *cobra.Command {
	var o bakeOptions
	cmd := &cobra.Command{
		Use:   "bake [IMAGE...]",
		Short: "Bake the spec's images into the local image store",
		Long: `Bake builds the images declared in kiln.hcl (all of them, or those named and the
images they are built on) into the image store in .kiln/, independent images in
parallel, and prints NAME@DIGEST for each.

Bakes are reproducible: the same spec and inputs give the same digest in any clone, on
any day. The image is dated SOURCE_DATE_EPOCH, else the last commit's time; the files in
its layers SOURCE_DATE_EPOCH, else 1970-01-01. Each step is cached by the hash of its
inputs, so a re-bake with nothing changed rebuilds nothing.`,
		Example: `  kiln bake
  kiln bake web                        # web and the images it is built on
  kiln bake --load                     # then: docker run --rm -p 8080:8080 kiln/web
  kiln bake --push localhost:5000/team # pushes localhost:5000/team/web@sha256:...
  kiln bake -var version=1.2.0 -json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBake(cmd, g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.push, "push", "", "push each image to `REPO`/NAME by digest")
	f.BoolVar(&o.load, "load", false, "load each image into the Docker engine as kiln/NAME:latest")
	f.BoolVar(&o.asJSON, "json", false, "print progress and results as JSON lines")
	addVarFlag(g, f)
	return cmd
}

// bakeResult is the JSON line printed for each image with -json.
type bakeResult struct {
	Type   string `json:"type"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
	SBOM   string `json:"sbom"`
	Cached bool   `json:"cached"`
	Pushed string `json:"pushed,omitempty"`
	Loaded string `json:"loaded,omitempty"`
}

func runBake(cmd *cobra.Command, g *globals, o bakeOptions, names []string) error {
	ctx := cmd.Context()
	cfg, err := g.loadSpec()
	if err != nil {
		return err
	}
	images, err := bake.Select(cfg, names)
	if err != nil {
		return err
	}
	if len(images) == 0 {
		return fmt.Errorf("%s declares no images: add an image block", cfg.Filename)
	}
	stateDir, err := g.state(cfg)
	if err != nil {
		return err
	}
	store, err := imagestore.Open(stateDir)
	if err != nil {
		return err
	}
	unlock, err := store.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	src, err := bake.ReadSource(ctx, cfg.Dir, nil)
	if err != nil {
		return err
	}
	prog := newProgress(g.stderr, false, images)
	if o.asJSON {
		prog = newProgress(g.stdout, true, images)
	}
	baker, err := bake.NewBaker(store, g.bakeOptions(cfg, src, prog.event))
	if err != nil {
		prog.stop()
		return err
	}
	results, err := baker.Bake(ctx, images)
	prog.stop()
	if err != nil {
		return g.bakeError(cfg, err)
	}

	var loader *docker.Driver // for --load: only the Docker driver loads images into Docker
	if o.load {
		if loader, err = docker.New(docker.Options{}); err != nil {
			return err
		}
		defer loader.Close()
	}
	enc := json.NewEncoder(g.stdout)
	for _, r := range results {
		out := bakeResult{Type: "result", Image: r.Name, Digest: r.Digest.String(), SBOM: r.SBOM.String(), Cached: r.Cached}
		if o.push != "" {
			ref, err := bake.Push(ctx, r.Image, o.push, r.Name)
			if err != nil {
				return err
			}
			out.Pushed = ref.String()
		}
		if o.load {
			tag := dockerTag(r.Name)
			if err := loader.LoadTagged(ctx, r.Image, tag); err != nil {
				return err
			}
			out.Loaded = tag
		}
		if o.asJSON {
			enc.Encode(out)
			continue
		}
		fmt.Fprintln(g.stdout, r.Ref())
		if out.Pushed != "" {
			fmt.Fprintf(g.stderr, "pushed %s\n", out.Pushed)
		}
		if out.Loaded != "" {
			fmt.Fprintf(g.stderr, "loaded into Docker as %s\n", out.Loaded)
		}
	}
	return nil
}

// dockerTag is the tag --load gives an image in the Docker engine.
func dockerTag(imageName string) string { return "kiln/" + imageName + ":latest" }

// bakeError shows a failed step at its place in the spec, like a spec diagnostic.
func (g *globals) bakeError(cfg *spec.Config, err error) error {
	var se *bake.StepError
	if errors.As(err, &se) && se.Range.Filename != "" {
		g.printDiags(cfg.Files, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Baking image %q failed", se.Image),
			Detail:   se.Unwrap().Error(),
			Subject:  se.Range.Ptr(),
		}})
		return exitError{1}
	}
	return err
}
