package bake

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/kiln-build/kiln/internal/spec"
)

// archiveKind is what a file named as a base holds.
type archiveKind string

const (
	fileRootfs        archiveKind = "rootfs tarball"
	fileDockerArchive archiveKind = "docker save archive"
	fileOCIArchive    archiveKind = "OCI layout archive"
)

// compression is how a file base is compressed.
type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
)

// maxLayerBytes bounds an archive's layer once decompressed: a small compressed archive
// cannot make a bake write without end.
const maxLayerBytes = 32 << 30

// fileBase is a file as a base: a rootfs tarball (one layer), a `docker save` archive
// (manifest.json and the layers it names, as `docker save` writes and `docker load`
// reads) or an OCI image layout in a tar (as `docker save` of Docker 25 and later, and
// skopeo's oci-archive, write). Which one is told from its content; anything else is
// refused, saying what was found.
func (b *Baker) fileBase(h *hostFiles, p string, pl spec.Platform, epoch int64) (base, error) {
	info, err := h.stat(p)
	if err != nil {
		return base{}, fmt.Errorf("reading base: %w", err)
	}
	if !info.Mode().IsRegular() {
		return base{}, fmt.Errorf("base %s is a %s, not a regular file", p, fileKind(info.Mode()))
	}
	size := info.Size()
	if size > maxBaseBytes {
		return base{}, fmt.Errorf("base %s is %d bytes, more than the %d allowed", p, size, int64(maxBaseBytes))
	}
	sum, err := h.sha256(p, size)
	if err != nil {
		return base{}, fmt.Errorf("reading base: %w", err)
	}
	open := func() (io.ReadCloser, error) {
		f, err := h.open(p)
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(f, size), f}, nil
	}
	kind, comp, err := classify(open)
	if err != nil {
		return base{}, fmt.Errorf("base %s: %w", p, err)
	}
	switch kind {
	case fileRootfs:
		return b.tarballBase(h, p, size, sum, epoch)
	case fileOCIArchive:
		if comp != uncompressed {
			return base{}, fmt.Errorf("base %s is a compressed OCI layout archive: decompress it (it is read in place)", p)
		}
		fsys, err := newTarFS(func() (*os.File, error) { return h.open(p) })
		if err != nil {
			return base{}, fmt.Errorf("reading OCI layout archive %s: %w", p, err)
		}
		bs, err := readLayout(fsys, p, pl)
		bs.file, bs.format = sum, fileOCIArchive
		return bs, err
	}
	k := key(map[string]any{"kind": "docker-archive", "sha256": sum})
	img, _, err := b.cachedBase(k, func() (v1.Image, error) {
		src, err := tarball.Image(func() (io.ReadCloser, error) { return decompressed(open, comp) }, nil)
		if err != nil {
			return nil, err
		}
		if err := checkPlatform(src, pl); err != nil {
			return nil, err
		}
		return b.importImage(src)
	})
	if err != nil {
		return base{}, fmt.Errorf("reading docker save archive %s: %w", p, err)
	}
	d, err := img.Digest()
	if err != nil {
		return base{}, err
	}
	return base{img: img, digest: d, file: sum, format: fileDockerArchive}, nil
}

// classify tells what the tar open reads holds, reading its headers (and manifest.json).
func classify(open func() (io.ReadCloser, error)) (archiveKind, compression, error) {
	f, err := open()
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	magic, _ := br.Peek(4)
	comp := uncompressed
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		comp = gzipped
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", 0, fmt.Errorf("it starts as gzip but is not: %w", err)
		}
		defer zr.Close()
		r = zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		comp = zstded
		zr, err := zstd.NewReader(br)
		if err != nil {
			return "", 0, err
		}
		defer zr.Close()
		r = zr
	}
	hr := bufio.NewReaderSize(r, 1024)
	head, _ := hr.Peek(512)
	if len(head) == 512 && bytes.Count(head, []byte{0}) == 512 {
		return "", 0, errors.New("it is an empty tar archive")
	}
	if len(head) < 512 || string(head[257:262]) != "ustar" {
		what := http.DetectContentType(head)
		if len(head) == 0 {
			what = "nothing"
		}
		return "", 0, fmt.Errorf("it is not a tar archive (it holds %s): a file base must be a rootfs tarball, a `docker save` archive or an OCI image layout in a tar", what)
	}
	tr := tar.NewReader(hr)
	var (
		n                          int
		manifest, ociLayout, index bool
		legacy                     bool
	)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", 0, fmt.Errorf("reading it as a tar archive: %w", err)
		}
		n++
		name := strings.TrimPrefix(path.Clean("/"+hd.Name), "/")
		if hd.Typeflag != tar.TypeReg {
			continue
		}
		switch {
		case name == "manifest.json":
			raw, err := io.ReadAll(io.LimitReader(tr, maxMetaBytes))
			if err != nil {
				return "", 0, err
			}
			var m []struct{ Config string }
			manifest = json.Unmarshal(raw, &m) == nil && len(m) > 0 && m[0].Config != ""
		case name == "oci-layout":
			ociLayout = true
		case name == "index.json":
			index = true
		case name == "repositories" || path.Base(name) == "layer.tar":
			legacy = true
		}
	}
	switch {
	case manifest:
		return fileDockerArchive, comp, nil
	case ociLayout && index:
		return fileOCIArchive, comp, nil
	case legacy:
		return "", 0, errors.New("it is a `docker save` archive without manifest.json, as Docker before 1.10 wrote: save the image again with a newer Docker")
	case n == 0:
		return "", 0, errors.New("it is a tar archive of nothing")
	}
	return fileRootfs, comp, nil
}

// decompressed opens a file base and undoes its compression.
func decompressed(open func() (io.ReadCloser, error), comp compression) (io.ReadCloser, error) {
	f, err := open()
	if err != nil || comp == uncompressed {
		return f, err
	}
	var r io.Reader
	if comp == gzipped {
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		r = zr
	} else {
		zr, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		r = zr.IOReadCloser()
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

// checkPlatform refuses an image whose configuration names another platform than p.
func checkPlatform(img v1.Image, p spec.Platform) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if cf.Architecture == "" || (cf.OS == p.OS && cf.Architecture == p.Arch && (cf.Variant == "" || p.Variant == "" || cf.Variant == p.Variant)) {
		return nil
	}
	have := spec.Platform{OS: cf.OS, Arch: cf.Architecture, Variant: cf.Variant}
	return fmt.Errorf("it holds a %s image and this image is for %s: set platform = %q in the image block, or use a %s base", have, p, have.String(), p)
}

// cachedBase is the image stored under cache key k, or else the one read stores (with
// importImage), then cached under k: an archive, or an image of the Docker engine, is
// read once, not on every bake. It reports whether the image came from the cache.
func (b *Baker) cachedBase(k string, read func() (v1.Image, error)) (v1.Image, bool, error) {
	if img, ok := b.cache.getBase(b.store, k); ok {
		return img, true, nil
	}
	img, err := read()
	if err != nil {
		return nil, false, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, false, err
	}
	return img, false, b.cache.putBase(k, d)
}

// importImage stores src as an OCI image: its configuration as it is (so the image ID
// is kept), each layer gzip-compressed by kiln, reproducibly. A layer whose content is
// not what the configuration's diff IDs say is refused.
func (b *Baker) importImage(src v1.Image) (v1.Image, error) {
	rawCfg, err := src.RawConfigFile()
	if err != nil {
		return nil, err
	}
	if len(rawCfg) > maxMetaBytes {
		return nil, fmt.Errorf("its configuration is %d bytes, more than the %d allowed", len(rawCfg), maxMetaBytes)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("its configuration: %w", err)
	}
	layers, err := src.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("it has %d layers and its configuration names %d", len(layers), len(cf.RootFS.DiffIDs))
	}
	cfgDigest, err := b.store.WriteBytes(rawCfg)
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawCfg)), Digest: cfgDigest},
	}
	for i, l := range layers {
		cl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			rc, err := l.Uncompressed()
			if err != nil {
				return nil, err
			}
			return &boundedReader{r: rc, left: maxLayerBytes}, nil
		})
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		ld, err := b.storeLayer(cl)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		if ld.DiffID != cf.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("layer %d is %s, and its configuration says %s", i+1, ld.DiffID, cf.RootFS.DiffIDs[i])
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.OCILayer, Size: ld.Size, Digest: ld.Digest})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	h, err := b.store.WriteBytes(raw)
	if err != nil {
		return nil, err
	}
	return b.store.Image(h)
}

// boundedReader fails once more than left bytes were read.
type boundedReader struct {
	r    io.ReadCloser
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, fmt.Errorf("a layer is more than the %d bytes allowed", int64(maxLayerBytes))
	}
	return n, err
}

func (b *boundedReader) Close() error { return b.r.Close() }

// tarFS is the regular files of an uncompressed tar as an fs.FS, each read in place.
type tarFS struct {
	open  func() (*os.File, error)
	files map[string]tarEntry
}

type tarEntry struct{ off, size int64 }

func newTarFS(open func() (*os.File, error)) (*tarFS, error) {
	f, err := open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := &countingReader{r: f}
	tr := tar.NewReader(cr)
	t := &tarFS{open: open, files: map[string]tarEntry{}}
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			return t, nil
		}
		if err != nil {
			return nil, err
		}
		// After Next, the reader stands at the entry's first byte: tar reads headers
		// in whole blocks and nothing ahead of the data.
		if hd.Typeflag == tar.TypeReg {
			t.files[strings.TrimPrefix(path.Clean("/"+hd.Name), "/")] = tarEntry{off: cr.n, size: hd.Size}
		}
	}
}

func (t *tarFS) Open(name string) (fs.File, error) {
	e, ok := t.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	f, err := t.open()
	if err != nil {
		return nil, err
	}
	return &tarFile{name: name, size: e.size, r: io.NewSectionReader(f, e.off, e.size), c: f}, nil
}

type tarFile struct {
	name string
	size int64
	r    io.Reader
	c    io.Closer
}

func (f *tarFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *tarFile) Close() error               { return f.c.Close() }
func (f *tarFile) Stat() (fs.FileInfo, error) { return tarFileInfo{f}, nil }

type tarFileInfo struct{ f *tarFile }

func (i tarFileInfo) Name() string       { return path.Base(i.f.name) }
func (i tarFileInfo) Size() int64        { return i.f.size }
func (i tarFileInfo) Mode() fs.FileMode  { return 0o444 }
func (i tarFileInfo) ModTime() time.Time { return time.Time{} }
func (i tarFileInfo) IsDir() bool        { return false }
func (i tarFileInfo) Sys() any           { return nil }

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
