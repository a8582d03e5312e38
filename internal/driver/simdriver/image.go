package simdriver

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"testing/fstest"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/driver"
)

// maxKept is the size of the largest image file whose content the runtime keeps for
// its servers to read (a greeting, a static page); larger ones (binaries) are known
// by path only.
const maxKept = 1 << 20

// image is what the runtime keeps of an image.
type image struct {
	entrypoint []string
	env        []string // NAME=value, the image's own
	workdir    string
	paths      map[string]bool // every file, by absolute path
	files      fstest.MapFS    // the content of files up to maxKept, by path without "/"
}

// EnsureImage loads the image of manifest digest from open, once: concurrent calls
// for one digest wait for the first. An image whose digest is not the one asked for is
// refused. It is idempotent.
func (d *Driver) EnsureImage(ctx context.Context, digest string, open func() (v1.Image, error)) error {
	d.mu.Lock()
	for {
		if d.closed {
			d.mu.Unlock()
			return fmt.Errorf("loading image %s: %w", digest, errClosed)
		}
		if d.images[digest] != nil {
			d.mu.Unlock()
			return nil
		}
		ch := d.loading[digest]
		if ch == nil {
			break
		}
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("loading image %s: %w", digest, ctx.Err())
		}
		d.mu.Lock()
	}
	ch := make(chan struct{})
	d.loading[digest] = ch
	d.mu.Unlock()

	img, err := load(digest, open)
	d.mu.Lock()
	delete(d.loading, digest)
	close(ch)
	if err == nil {
		d.images[digest] = img
	}
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("loading image %s: %w", digest, err)
	}
	return nil
}

func load(digest string, open func() (v1.Image, error)) (*image, error) {
	v, err := open()
	if err != nil {
		return nil, err
	}
	h, err := v.Digest()
	if err != nil {
		return nil, err
	}
	if h.String() != digest {
		return nil, fmt.Errorf("the image opened has digest %s", h)
	}
	cf, err := v.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading its configuration: %w", err)
	}
	img := &image{entrypoint: cf.Config.Entrypoint, env: cf.Config.Env, workdir: cf.Config.WorkingDir,
		paths: map[string]bool{}, files: fstest.MapFS{}}
	if img.workdir == "" {
		img.workdir = "/"
	}
	layers, err := v.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		if err := img.apply(l); err != nil {
			return nil, fmt.Errorf("reading its layers: %w", err)
		}
	}
	return img, nil
}

// apply adds a layer's files, and removes those its whiteouts delete.
func (img *image) apply(l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		dir, base := path.Split(name)
		if gone, ok := strings.CutPrefix(base, ".wh."); ok {
			if gone == ".wh..opq" {
				img.remove(path.Clean(dir), false)
			} else {
				img.remove(path.Join(dir, gone), true)
			}
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
			img.paths[name] = true
			if h.Typeflag == tar.TypeReg && h.Size <= maxKept {
				b, err := io.ReadAll(tr)
				if err != nil {
					return err
				}
				img.files[name[1:]] = &fstest.MapFile{Data: b, Mode: 0o444}
			}
		}
	}
}

// remove deletes p and what is under it (only what is under it without self).
func (img *image) remove(p string, self bool) {
	prefix := strings.TrimSuffix(p, "/") + "/"
	for q := range img.paths {
		if (self && q == p) || strings.HasPrefix(q, prefix) {
			delete(img.paths, q)
			delete(img.files, q[1:])
		}
	}
}

// canRun fails as a runtime's start does when the spec's command names an absolute
// path the image has no file at. The simulated process is examples/hello whatever the
// file (and also when neither the spec nor the image names a command: the engine's
// tests bake images with no program in them).
func (img *image) canRun(spec driver.ServerSpec) error {
	if len(spec.Command) == 0 || !path.IsAbs(spec.Command[0]) {
		return nil
	}
	if p := path.Clean(spec.Command[0]); !img.paths[p] {
		return fmt.Errorf("exec: %q: stat %s: no such file or directory", spec.Command[0], p)
	}
	return nil
}
