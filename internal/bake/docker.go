package bake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kiln-build/kiln/internal/driver/docker/dockerimage"
	"github.com/kiln-build/kiln/internal/spec"
)

// dockerBase is the image ref names in the local Docker engine (docker://REF), resolved
// to its image ID now. It is exported (`docker save`) and stored once per image ID; a
// re-bake only asks the engine which ID ref names.
func (b *Baker) dockerBase(ctx context.Context, imageName, ref string, p spec.Platform) (base, error) {
	c, err := dockerimage.New()
	if err != nil {
		return base{}, err
	}
	defer c.Close()
	di, err := c.Inspect(ctx, ref)
	switch {
	case errors.Is(err, dockerimage.ErrNotFound) && strings.HasPrefix(ref, "sha256:"):
		return base{}, fmt.Errorf("the Docker engine has no image %s: load or build it first", ref)
	case errors.Is(err, dockerimage.ErrNotFound):
		return base{}, fmt.Errorf("the Docker engine has no image %s: run `docker pull %s` first (or build it)", ref, ref)
	case err != nil:
		return base{}, fmt.Errorf("reading docker://%s: %w", ref, err)
	}
	if di.Architecture != "" && (di.OS != p.OS || di.Architecture != p.Arch) {
		have := spec.Platform{OS: di.OS, Arch: di.Architecture, Variant: di.Variant}
		return base{}, fmt.Errorf("docker://%s is a %s image and this image is for %s: set platform = %q in the image block", ref, have, p, have.String())
	}
	step := spec.DockerScheme + ref
	start := time.Now()
	b.opts.Progress(Event{Image: imageName, Step: "from " + step, State: StateStart})
	k := key(map[string]any{"kind": "docker-image", "id": di.ID.String()})
	img, hit, err := b.cachedBase(k, func() (v1.Image, error) {
		f, err := os.CreateTemp(b.tmp, "docker-save-*.tar")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if err := c.Save(ctx, di.ID, f); err != nil {
			return nil, fmt.Errorf("exporting docker://%s: %w", ref, err)
		}
		src, err := tarball.Image(func() (io.ReadCloser, error) { return os.Open(f.Name()) }, nil)
		if err != nil {
			return nil, fmt.Errorf("reading the export of docker://%s: %w", ref, err)
		}
		return b.importImage(src)
	})
	if err != nil {
		b.opts.Progress(Event{Image: imageName, Step: "from " + step, State: StateFailed, Error: err.Error()})
		return base{}, err
	}
	state := StateBuilt
	if hit {
		state = StateCached
	}
	b.opts.Progress(Event{Image: imageName, Step: "from " + step, State: state, Elapsed: time.Since(start)})
	d, err := img.Digest()
	if err != nil {
		return base{}, err
	}
	name := ref
	if strings.HasPrefix(ref, "sha256:") {
		name = ""
	}
	return base{img: img, name: name, digest: d, docker: &di}, nil
}
