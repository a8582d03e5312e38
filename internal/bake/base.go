package bake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/driver/docker/dockerimage"
	"github.com/kiln-build/kiln/internal/spec"
)

// base is the image an image block starts from, and what the image records of it. Nothing
// recorded is a host path: a path base is named as the spec wrote it, relative to the
// spec (see asWritten), or by its content digest alone.
type base struct {
	img    v1.Image
	kind   spec.FromKind
	name   string      // the base's name: image block, reference or path as written; "" if none
	digest v1.Hash     // the base image's manifest digest; zero for scratch and a rootfs
	file   string      // SHA-256 (hex) of a file base (rootfs tarball or archive)
	format archiveKind // what a file base holds
	docker *dockerimage.Image
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
func (b *Baker) resolveBase(ctx context.Context, h *hostFiles, img *spec.Image, done map[string]*Result, epoch int64) (base, error) {
	f := img.From
	switch f.Kind {
	case spec.FromScratch:
		return base{img: scratch(), kind: f.Kind}, nil
	case spec.FromImage:
		r := done[f.Ref]
		if r == nil {
			return base{}, fmt.Errorf("image %q was not baked", f.Ref)
		}
		return base{img: r.Image, kind: f.Kind, name: f.Ref, digest: r.Digest}, nil
	case spec.FromLayout:
		bs, err := layoutBase(h, f.Ref, img.Platform)
		bs.kind, bs.name = f.Kind, b.asWritten(img, f.Ref)
		return bs, err
	case spec.FromTarball:
		bs, err := b.fileBase(h, f.Ref, img.Platform, epoch)
		bs.kind, bs.name = f.Kind, b.asWritten(img, f.Ref)
		return bs, err
	case spec.FromDocker:
		bs, err := b.dockerBase(ctx, img.Name, f.Ref, img.Platform)
		bs.kind = f.Kind
		return bs, err
	case spec.FromRegistry:
		bs, err := b.registryBase(ctx, f.Ref, img.Platform)
		bs.kind = f.Kind
		return bs, err
	}
	return base{}, fmt.Errorf("unknown base kind %q", f.Kind)
}

// asWritten is how an image records the path of its base: relative to the directory of
// the spec (of the checkout, for a confined bake), in slash form and starting with "./",
// so that two clones at different paths bake the same image. A path outside that
// directory is recorded as "": the image then names the base by its digest alone.
func (b *Baker) asWritten(img *spec.Image, p string) string {
	dir := b.opts.Root
	if !b.opts.Confine || dir == "" {
		dir = filepath.Dir(img.From.Range.Filename)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return ""
	}
	return "./" + filepath.ToSlash(rel)
}

// Bounds on what a base may make a bake read. An OCI layout is input like any other: its
// index may nest, refer to itself, or name blobs whose content is not what it says.
const (
	maxIndexDepth = 8       // indexes within indexes
	maxMetaBytes  = 8 << 20 // an index, manifest or config blob
	maxBaseBytes  = 8 << 30 // a layer blob or a rootfs tarball
)

// layoutBase picks the image for platform from an OCI layout: the only image, or the one
// whose platform matches. Every blob is read through its descriptor: its size and
// digest are checked, and no more than its size is read.
func layoutBase(h *hostFiles, dir string, p spec.Platform) (base, error) {
	fsys, err := h.sub(dir)
	if err != nil {
		return base{}, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	return readLayout(fsys, dir, p)
}

// readLayout reads the OCI layout in fsys (a directory, or an archive, named dir).
func readLayout(fsys fs.FS, dir string, p spec.Platform) (base, error) {
	l := &ociLayout{fsys: fsys}
	raw, err := readBounded(fsys, "index.json", maxMetaBytes)
	if err != nil {
		return base{}, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return base{}, fmt.Errorf("reading OCI layout %s: index.json: %w", dir, err)
	}
	d, err := l.pick(idx, v1Platform(p), 0, map[v1.Hash]bool{})
	if err != nil {
		return base{}, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	img, err := l.image(d)
	if err != nil {
		return base{}, fmt.Errorf("OCI layout %s: image %s: %w", dir, d.Digest, err)
	}
	return base{img: img, digest: d.Digest}, nil
}

// ociLayout reads the blobs of an OCI image layout.
type ociLayout struct{ fsys fs.FS }

// pick returns the descriptor of the image for want: in idx, or in the first index it
// lists (as deep as maxIndexDepth, each index at most once).
func (l *ociLayout) pick(idx *v1.IndexManifest, want v1.Platform, depth int, seen map[v1.Hash]bool) (v1.Descriptor, error) {
	var images []v1.Descriptor
	for _, d := range idx.Manifests {
		if d.MediaType.IsImage() {
			images = append(images, d)
		}
		if d.MediaType.IsIndex() {
			if depth+1 > maxIndexDepth {
				return v1.Descriptor{}, fmt.Errorf("indexes nest deeper than %d", maxIndexDepth)
			}
			if seen[d.Digest] {
				return v1.Descriptor{}, fmt.Errorf("index %s is listed within itself", d.Digest)
			}
			seen[d.Digest] = true
			raw, err := l.readBlob(d, maxMetaBytes)
			if err != nil {
				return v1.Descriptor{}, err
			}
			child, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			return l.pick(child, want, depth+1, seen)
		}
	}
	if len(images) == 1 && images[0].Platform == nil {
		return images[0], nil
	}
	for _, d := range images {
		if d.Platform != nil && d.Platform.Satisfies(want) {
			return d, nil
		}
	}
	if len(images) == 1 {
		return images[0], nil
	}
	return v1.Descriptor{}, fmt.Errorf("no image for platform %s among %d", want.String(), len(images))
}

func (l *ociLayout) image(d v1.Descriptor) (v1.Image, error) {
	raw, err := l.readBlob(d, maxMetaBytes)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&layoutImage{l: l, raw: raw, m: m, mt: d.MediaType})
}

// blob opens the blob d names, reading no more than d.Size (at most max) bytes and
// failing at the end unless they were d.Size bytes with digest d.Digest.
func (l *ociLayout) blob(d v1.Descriptor, max int64) (io.ReadCloser, error) {
	if d.Size < 0 || d.Size > max {
		return nil, fmt.Errorf("blob %s: size %d is more than the %d bytes allowed", d.Digest, d.Size, max)
	}
	if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 {
		return nil, fmt.Errorf("blob %q: only sha256 digests are read", d.Digest)
	}
	f, err := l.fsys.Open("blobs/sha256/" + d.Digest.Hex)
	if err != nil {
		return nil, err
	}
	return &verifiedReader{r: io.LimitReader(f, d.Size+1), c: f, h: sha256.New(), d: d}, nil
}

func (l *ociLayout) readBlob(d v1.Descriptor, max int64) ([]byte, error) {
	r, err := l.blob(d, max)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// readBounded reads a file of fsys that must be at most max bytes.
func readBounded(fsys fs.FS, name string, max int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%s is more than the %d bytes allowed", name, max)
	}
	return b, err
}

// verifiedReader reads a blob and fails, instead of returning io.EOF, unless the blob
// was exactly its descriptor's size and digest.
type verifiedReader struct {
	r io.Reader
	c io.Closer
	h hash.Hash
	n int64
	d v1.Descriptor
}

func (v *verifiedReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.d.Size {
		return n, fmt.Errorf("blob %s is larger than its descriptor's %d bytes", v.d.Digest, v.d.Size)
	}
	if err == io.EOF {
		if v.n != v.d.Size {
			return n, fmt.Errorf("blob %s is %d bytes, its descriptor says %d", v.d.Digest, v.n, v.d.Size)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.d.Digest.Hex {
			return n, fmt.Errorf("blob %s has digest sha256:%s", v.d.Digest, got)
		}
	}
	return n, err
}

func (v *verifiedReader) Close() error { return v.c.Close() }

// layoutImage is an image whose blobs are in an OCI layout.
type layoutImage struct {
	l   *ociLayout
	raw []byte
	m   *v1.Manifest
	mt  types.MediaType
}

func (i *layoutImage) MediaType() (types.MediaType, error) {
	if i.mt != "" {
		return i.mt, nil
	}
	if i.m.MediaType != "" {
		return i.m.MediaType, nil
	}
	return types.OCIManifestSchema1, nil
}
func (i *layoutImage) RawManifest() ([]byte, error) { return i.raw, nil }
func (i *layoutImage) RawConfigFile() ([]byte, error) {
	return i.l.readBlob(i.m.Config, maxMetaBytes)
}
func (i *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.m.Layers {
		if d.Digest == h {
			return &layoutBlob{l: i.l, d: d}, nil
		}
	}
	if i.m.Config.Digest == h {
		return &layoutBlob{l: i.l, d: i.m.Config}, nil
	}
	return nil, fmt.Errorf("blob %s is not part of this image", h)
}

type layoutBlob struct {
	l *ociLayout
	d v1.Descriptor
}

func (b *layoutBlob) Digest() (v1.Hash, error)            { return b.d.Digest, nil }
func (b *layoutBlob) Size() (int64, error)                { return b.d.Size, nil }
func (b *layoutBlob) MediaType() (types.MediaType, error) { return b.d.MediaType, nil }
func (b *layoutBlob) Compressed() (io.ReadCloser, error)  { return b.l.blob(b.d, maxBaseBytes) }

// tarballBase makes a one-layer base from the rootfs tarball p (size bytes, SHA-256
// sum), cached by its hash.
func (b *Baker) tarballBase(h *hostFiles, p string, size int64, sum string, epoch int64) (base, error) {
	k := key(map[string]any{"kind": "rootfs", "sha256": sum})
	bl, ok := b.cache.get(b.store, k)
	if !ok {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			f, err := h.open(p)
			if err != nil {
				return nil, err
			}
			return struct {
				io.Reader
				io.Closer
			}{io.LimitReader(f, size), f}, nil
		})
		if err != nil {
			return base{}, fmt.Errorf("reading rootfs tarball %s: %w", p, err)
		}
		ld, err := b.storeLayer(l)
		if err != nil {
			return base{}, fmt.Errorf("storing rootfs tarball %s: %w", p, err)
		}
		bl = &built{Key: k, Layer: ld}
		if err := b.cache.put(bl); err != nil {
			return base{}, err
		}
	}
	return base{img: scratch(), file: sum, format: fileRootfs, layers: []*built{bl}}, nil
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
	if err := b.store.WriteBlob(d, l.Compressed); err != nil {
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
			if img, err := b.store.Image(h); err == nil {
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

// describe names the base in the history of the layers it adds.
func (bs base) describe() string {
	what := string(bs.kind)
	if bs.kind == spec.FromTarball {
		what = "rootfs tarball"
	}
	if bs.name != "" {
		what += " " + bs.name
	}
	if bs.file != "" {
		what += " sha256:" + bs.file
	}
	return what
}
