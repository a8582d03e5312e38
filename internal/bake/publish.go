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
