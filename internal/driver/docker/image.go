package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
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

	if res, err := d.cli.ImageInspect(ctx, tag); err == nil {
		d.noteLayers(res.RootFS.Layers)
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

// LoadTagged is `kiln bake --load`: it makes img available to the engine as
// EnsureImage does (loaded unless the engine has it, without the layers the engine
// holds, checked to be there after), then tags it tag as well, moving tag from any
// image it named before, so that `docker run TAG` runs it. It blocks until the engine
// has answered, and is idempotent. An engine that does not answer is an error wrapping
// driver.ErrUnavailable that says what to do.
func (d *Driver) LoadTagged(ctx context.Context, img v1.Image, tag string) error {
	if _, err := name.NewTag(tag); err != nil {
		return err
	}
	// Not d.Ping: that also sweeps the daemon's secret files, which is not a bake's to do.
	if _, err := d.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: cannot reach the Docker engine at %s (is it running? start it with `sudo systemctl start docker`, or point DOCKER_HOST at it): %v",
				driver.ErrUnavailable, d.cli.DaemonHost(), err)
		}
		return d.check(err)
	}
	h, err := img.Digest()
	if err != nil {
		return err
	}
	if err := d.EnsureImage(ctx, h.String(), func() (v1.Image, error) { return img, nil }); err != nil {
		return err
	}
	src, err := imageTag(h.String())
	if err != nil {
		return err
	}
	if _, err := d.cli.ImageTag(ctx, client.ImageTagOptions{Source: src, Target: tag}); err != nil {
		return fmt.Errorf("tagging image %s as %s: %w", h, tag, d.check(err))
	}
	return nil
}

// load streams img to the engine as a `docker save` tarball tagged tag. Layers the
// engine holds already (the same layer on the same parents, from an image loaded
// before) are left out of the tarball: the engine skips loading them anyway, and a new
// commit usually changes one layer of several. If the engine refuses the slim tarball
// (it removed a layer meanwhile), the whole image is sent.
func (d *Driver) load(ctx context.Context, tag string, img v1.Image) error {
	if err := d.seedLayers(ctx); err != nil {
		return err
	}
	skip, err := d.presentLayers(img)
	if err != nil {
		return err
	}
	err = d.loadTar(ctx, tag, img, skip)
	if err != nil && len(skip) > 0 && ctx.Err() == nil && !errors.Is(err, driver.ErrUnavailable) {
		d.forgetLayers()
		err = d.loadTar(ctx, tag, img, nil)
	}
	if err != nil {
		return err
	}
	// Check that the tag is there: an engine can end a load without an error message.
	res, err := d.cli.ImageInspect(ctx, tag)
	if err != nil {
		return fmt.Errorf("the engine has no %s after loading it: %w", tag, d.check(err))
	}
	d.noteLayers(res.RootFS.Layers)
	return nil
}

// loadTar sends img to the engine, without the layers whose diff IDs are in skip.
func (d *Driver) loadTar(ctx context.Context, tag string, img v1.Image, skip map[v1.Hash]bool) error {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeSaveTar(pw, tag, img, skip))
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
	return sc.Err()
}

// writeSaveTar writes img in the format of `docker save` (a manifest.json naming the
// config and the layers, compressed layers as files), leaving out the layers in skip.
func writeSaveTar(w io.Writer, tag string, img v1.Image, skip map[v1.Hash]bool) error {
	tw := tar.NewWriter(w)
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := add(cfgName.Hex+".json", int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var names []string
	for _, l := range layers {
		dgst, err := l.Digest()
		if err != nil {
			return err
		}
		diffID, err := l.DiffID()
		if err != nil {
			return err
		}
		name := dgst.Hex + ".tar.gz"
		names = append(names, name)
		if skip[diffID] {
			continue
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = add(name, size, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	m, err := json.Marshal([]map[string]any{{"Config": cfgName.Hex + ".json", "RepoTags": []string{tag}, "Layers": names}})
	if err != nil {
		return err
	}
	if err := add("manifest.json", int64(len(m)), bytes.NewReader(m)); err != nil {
		return err
	}
	return tw.Close()
}

// chainIDs returns the chain ID of each layer of a stack of diff IDs: the engine keeps a
// layer under the ID of itself on its parents, so the same diff on other parents is
// another layer.
func chainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, id := range diffIDs {
		if i == 0 {
			out[i] = id
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + id))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// noteLayers records that the engine holds the layers of an image with diffIDs.
func (d *Driver) noteLayers(diffIDs []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range chainIDs(diffIDs) {
		d.chains[c] = true
	}
}

func (d *Driver) forgetLayers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.chains)
}

// presentLayers returns the diff IDs of img's layers that the engine holds already.
func (d *Driver) presentLayers(img v1.Image) (map[v1.Hash]bool, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(cf.RootFS.DiffIDs))
	for i, h := range cf.RootFS.DiffIDs {
		ids[i] = h.String()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	skip := map[v1.Hash]bool{}
	for i, c := range chainIDs(ids) {
		if !d.chains[c] {
			break // the engine cannot hold a layer whose parent it lacks
		}
		skip[cf.RootFS.DiffIDs[i]] = true
	}
	return skip, nil
}

// seedLayers learns, once per driver, the layers of the images kiln loaded before.
func (d *Driver) seedLayers(ctx context.Context) error {
	d.mu.Lock()
	seeded := d.seeded
	d.seeded = true
	d.mu.Unlock()
	if seeded {
		return nil
	}
	res, err := d.cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", imageRepo)})
	if err != nil {
		return d.check(err)
	}
	for i, s := range res.Items {
		if i == 50 {
			break // enough to find the layers a new version shares with the last ones
		}
		if r, err := d.cli.ImageInspect(ctx, s.ID); err == nil {
			d.noteLayers(r.RootFS.Layers)
		}
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
