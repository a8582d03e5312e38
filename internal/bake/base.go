package bake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/spec"
)

// base is the image an image block starts from.
type base struct {
	img    v1.Image
	name   string  // what to record as the base's name; "" for scratch
	digest v1.Hash // zero for scratch
	layers []*built
}

func scratch() v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

func v1Platform(p spec.Platform) v1.Platform {
	return v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant}
}

// resolveBase finds an image's base. Bases of other image blocks come from done, which
// holds the images already baked in this run.
func (b *Baker) resolveBase(ctx context.Context, img *spec.Image, done map[string]*Result, epoch int64) (base, error) {
	f := img.From
	switch f.Kind {
	case spec.FromScratch:
		return base{img: scratch()}, nil
	case spec.FromImage:
		r := done[f.Ref]
		if r == nil {
			return base{}, fmt.Errorf("image %q was not baked", f.Ref)
		}
		return base{img: r.Image, name: f.Ref, digest: r.Digest}, nil
	case spec.FromLayout:
		return layoutBase(f.Ref, img.Platform)
	case spec.FromTarball:
		return b.tarballBase(f.Ref, epoch)
	case spec.FromRegistry:
		return b.registryBase(ctx, f.Ref, img.Platform)
	}
	return base{}, fmt.Errorf("unknown base kind %q", f.Kind)
}

// layoutBase picks the image for platform from an OCI layout: the only image, or the one
// whose platform matches.
func layoutBase(dir string, p spec.Platform) (base, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return base{}, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	img, err := pickImage(idx, v1Platform(p))
	if err != nil {
		return base{}, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	d, err := img.Digest()
	if err != nil {
		return base{}, err
	}
	return base{img: img, name: filepath.Base(dir), digest: d}, nil
}

func pickImage(idx v1.ImageIndex, want v1.Platform) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var images []v1.Descriptor
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() {
			images = append(images, d)
		}
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			return pickImage(child, want)
		}
	}
	if len(images) == 1 && images[0].Platform == nil {
		return idx.Image(images[0].Digest)
	}
	for _, d := range images {
		if d.Platform != nil && d.Platform.Satisfies(want) {
			return idx.Image(d.Digest)
		}
	}
	if len(images) == 1 {
		return idx.Image(images[0].Digest)
	}
	return nil, fmt.Errorf("no image for platform %s among %d", want.String(), len(images))
}

// tarballBase makes a one-layer base from a rootfs tarball, cached by the tarball's hash.
func (b *Baker) tarballBase(path string, epoch int64) (base, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return base{}, fmt.Errorf("reading rootfs tarball: %w", err)
	}
	k := key(map[string]any{"kind": "rootfs", "sha256": sum})
	bl, ok := b.cache.get(b.store, k)
	if !ok {
		l, err := tarball.LayerFromFile(path)
		if err != nil {
			return base{}, fmt.Errorf("reading rootfs tarball %s: %w", path, err)
		}
		ld, err := b.storeLayer(l)
		if err != nil {
			return base{}, fmt.Errorf("storing rootfs tarball %s: %w", path, err)
		}
		bl = &built{Key: k, Layer: ld}
		if err := b.cache.put(bl); err != nil {
			return base{}, err
		}
	}
	return base{img: scratch(), name: filepath.Base(path), layers: []*built{bl}}, nil
}

func (b *Baker) storeLayer(l v1.Layer) (layerDesc, error) {
	d, err := l.Digest()
	if err != nil {
		return layerDesc{}, err
	}
	diff, err := l.DiffID()
	if err != nil {
		return layerDesc{}, err
	}
	if err := b.store.writeBlob(d, l.Compressed); err != nil {
		return layerDesc{}, err
	}
	size, err := l.Size()
	if err != nil {
		return layerDesc{}, err
	}
	return layerDesc{Digest: d, DiffID: diff, Size: size, MediaType: types.OCILayer}, nil
}

// registryBase resolves a registry reference to a digest. A reference by digest that the
// store already holds is served from the store, without the network.
func (b *Baker) registryBase(ctx context.Context, ref string, p spec.Platform) (base, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return base{}, err
	}
	if d, ok := r.(name.Digest); ok {
		if h, err := v1.NewHash(d.DigestStr()); err == nil {
			if img, err := b.store.imageByDigest(h); err == nil {
				return base{img: img, name: r.Name(), digest: h}, nil
			}
		}
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(v1Platform(p)),
		remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return base{}, RegistryError("pulling base image "+ref, r.Context().RegistryStr(), err)
	}
	h, err := img.Digest()
	if err != nil {
		return base{}, err
	}
	return base{img: img, name: r.Name(), digest: h}, nil
}

// RegistryError explains a failed registry call; an unreachable registry is named as such.
func RegistryError(what, registry string, err error) error {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot reach the registry at %s: %w (is it running, and is the address right?)", what, registry, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// imageByDigest reads an image manifest from the store's blobs, whether or not the
// index lists it.
func (s *Store) imageByDigest(h v1.Hash) (v1.Image, error) {
	raw, err := s.readBlob(h)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	if !m.MediaType.IsImage() && m.MediaType != "" {
		return nil, fmt.Errorf("%s is a %s, not an image", h, m.MediaType)
	}
	return partial.CompressedToImage(&storedImage{s: s, raw: raw, m: m})
}

func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	r, err := s.Blob(h)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// storedImage is an image whose manifest, config and layers are blobs in the store.
type storedImage struct {
	s   *Store
	raw []byte
	m   *v1.Manifest
}

func (i *storedImage) MediaType() (types.MediaType, error) {
	if i.m.MediaType == "" {
		return types.OCIManifestSchema1, nil
	}
	return i.m.MediaType, nil
}
func (i *storedImage) RawManifest() ([]byte, error)   { return i.raw, nil }
func (i *storedImage) RawConfigFile() ([]byte, error) { return i.s.readBlob(i.m.Config.Digest) }
func (i *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range i.m.Layers {
		if l.Digest == h {
			return &storedBlob{s: i.s, d: l}, nil
		}
	}
	if i.m.Config.Digest == h {
		return &storedBlob{s: i.s, d: i.m.Config}, nil
	}
	return nil, fmt.Errorf("blob %s is not part of this image", h)
}

type storedBlob struct {
	s *Store
	d v1.Descriptor
}

func (b *storedBlob) Digest() (v1.Hash, error)            { return b.d.Digest, nil }
func (b *storedBlob) Size() (int64, error)                { return b.d.Size, nil }
func (b *storedBlob) MediaType() (types.MediaType, error) { return b.d.MediaType, nil }
func (b *storedBlob) Compressed() (io.ReadCloser, error)  { return b.s.Blob(b.d.Digest) }
