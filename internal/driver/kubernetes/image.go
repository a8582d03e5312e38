package kubernetes

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/kiln-build/kiln/internal/driver"
)

// Repository is the repository of the registry kiln's images are pushed to.
const Repository = "kiln"

// errNoRegistry: the driver was given no registry to push images to.
var errNoRegistry = errors.New("the kubernetes driver has no registry to push images to: set registry (and pull_registry if the cluster's nodes reach it by another name) in the runtime block")

// imageRef is how pods name the image of digest: by digest only, from the registry
// the cluster pulls from.
func (d *Driver) imageRef(digest string) string {
	return d.pull + "/" + Repository + "@" + digest
}

// pushRef is where EnsureImage pushes the image of digest.
func (d *Driver) pushRef(digest string) (name.Digest, error) {
	if d.registry == "" {
		return name.Digest{}, errNoRegistry
	}
	ref, err := name.NewDigest(d.registry + "/" + Repository + "@" + digest)
	if err != nil {
		return name.Digest{}, fmt.Errorf("registry %q: %w", d.registry, err)
	}
	return ref, nil
}

// EnsureImage pushes the image of digest to the driver's registry unless the registry
// has it already, and checks that what open gave has that digest. Concurrent calls for
// one digest push it once.
func (d *Driver) EnsureImage(ctx context.Context, digest string, open func() (v1.Image, error)) error {
	ref, err := d.pushRef(digest)
	if err != nil {
		return err
	}
	if d.hasPushed(digest) {
		return nil
	}
	_, err, _ = d.pushes.Do(digest, func() (any, error) { return nil, d.push(ctx, ref, digest, open) })
	return err
}

func (d *Driver) push(ctx context.Context, ref name.Digest, digest string, open func() (v1.Image, error)) error {
	if d.hasPushed(digest) {
		return nil
	}
	if _, err := remote.Head(ref, remote.WithContext(ctx)); err == nil {
		d.markPushed(digest)
		return nil
	} else if !isNotFound(err) {
		return fmt.Errorf("%w: registry %s: %w", driver.ErrUnavailable, d.registry, err)
	}
	img, err := open()
	if err != nil {
		return fmt.Errorf("opening image %s: %w", digest, err)
	}
	got, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image %s: %w", digest, err)
	}
	if got.String() != digest {
		return fmt.Errorf("image %s: the store gave %s", digest, got)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("pushing image %s to %s: %w", digest, d.registry, err)
	}
	d.markPushed(digest)
	return nil
}

// hasImage reports whether the registry has the image of digest, as far as the
// driver can tell at once: ErrImageNotFound when it answers that it does not.
func (d *Driver) hasImage(ctx context.Context, digest string) error {
	ref, err := d.pushRef(digest)
	if err != nil {
		return err
	}
	if d.hasPushed(digest) {
		return nil
	}
	if _, err := remote.Head(ref, remote.WithContext(ctx)); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("image %s is not in %s: %w", digest, d.registry, driver.ErrImageNotFound)
		}
		return fmt.Errorf("%w: registry %s: %w", driver.ErrUnavailable, d.registry, err)
	}
	d.markPushed(digest)
	return nil
}

func (d *Driver) hasPushed(digest string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pushed[digest]
}

func (d *Driver) markPushed(digest string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pushed[digest] = true
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == 404
}
