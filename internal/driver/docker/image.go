package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"
)

// imageRepo is where loaded images are tagged: kiln/img:<hex of the manifest digest>.
// The engine's own image IDs are config digests, so the tag is what ties an engine
// image to the manifest digest a spec names.
const imageRepo = "kiln/img"

// imageTag is the engine tag of the image with manifest digest.
func imageTag(digest string) (string, error) {
	h, err := v1.NewHash(digest)
	if err != nil || h.Algorithm != "sha256" {
		return "", fmt.Errorf("%q is not an image digest (want sha256:<64 hex>)", digest)
	}
	return imageRepo + ":" + h.Hex, nil
}

// EnsureImage loads the image into the engine unless it is tagged there already. Calls
// for the same digest run one at a time, so the image is loaded once. open's image must
// have the manifest digest asked for.
func (d *Driver) EnsureImage(ctx context.Context, digest string, open func() (v1.Image, error)) error {
	tag, err := imageTag(digest)
	if err != nil {
		return err
	}
	unlock, err := d.lockDigest(ctx, digest)
	if err != nil {
		return fmt.Errorf("loading image %s: %w", digest, err)
	}
	defer unlock()

	if _, err := d.cli.ImageInspect(ctx, tag); err == nil {
		return nil
	} else if !isNotFound(err) {
		return fmt.Errorf("loading image %s: %w", digest, d.check(err))
	}
	img, err := open()
	if err != nil {
		return fmt.Errorf("loading image %s: opening it: %w", digest, err)
	}
	if h, err := img.Digest(); err != nil {
		return fmt.Errorf("loading image %s: %w", digest, err)
	} else if h.String() != digest {
		return fmt.Errorf("loading image %s: the image opened has digest %s", digest, h)
	}
	if err := d.load(ctx, tag, img); err != nil {
		return fmt.Errorf("loading image %s: %w", digest, err)
	}
	return nil
}

// load streams img to the engine as a `docker save` tarball tagged tag.
func (d *Driver) load(ctx context.Context, tag string, img v1.Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(tarball.Write(t, img, pw))
	}()
	defer func() { <-done }() // the writer ends once pr is closed, whatever happened
	defer pr.Close()

	resp, err := d.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return d.check(err)
	}
	defer resp.Close()
	// The engine answers with a JSON message stream; a failure arrives as a message.
	sc := bufio.NewScanner(resp)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.Error != "" {
			return fmt.Errorf("the engine refused it: %s", msg.Error)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	// Check that the tag is there: an engine can end a load without an error message.
	if _, err := d.cli.ImageInspect(ctx, tag); err != nil {
		return fmt.Errorf("the engine has no %s after loading it: %w", tag, d.check(err))
	}
	return nil
}

// lockDigest waits until no other EnsureImage runs for digest and takes its turn.
func (d *Driver) lockDigest(ctx context.Context, digest string) (unlock func(), err error) {
	for {
		d.mu.Lock()
		busy, ok := d.loading[digest]
		if !ok {
			mine := make(chan struct{})
			d.loading[digest] = mine
			d.mu.Unlock()
			return func() {
				d.mu.Lock()
				delete(d.loading, digest)
				d.mu.Unlock()
				close(mine)
			}, nil
		}
		d.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
