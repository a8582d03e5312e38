package bake

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/internal/dockerimage"
)

// Push uploads img to repo/NAME by digest (never by tag: what was baked is what is
// deployed) and returns the pushed reference.
func Push(ctx context.Context, img v1.Image, repo, imageName string) (name.Digest, error) {
	h, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	ref, err := name.NewDigest(strings.TrimSuffix(repo, "/") + "/" + imageName + "@" + h.String())
	if err != nil {
		return name.Digest{}, fmt.Errorf("%q is not a repository to push to (want e.g. localhost:5000/team): %w", repo, err)
	}
	err = remote.Write(ref, img,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Steps: 3}),
	)
	if err != nil {
		return name.Digest{}, RegistryError("pushing "+imageName+" to "+ref.Context().Name(), ref.Context().RegistryStr(), err)
	}
	return ref, nil
}

// DockerTag is the tag --load gives an image in the Docker engine.
func DockerTag(imageName string) string { return "kiln/" + imageName + ":latest" }

// Load makes img available to the Docker engine (found as the docker CLI finds it:
// DOCKER_HOST, else the local socket) under tag.
func Load(ctx context.Context, img v1.Image, tag string) error {
	c, err := dockerimage.New()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Load(ctx, img, tag)
}
