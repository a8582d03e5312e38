package bake

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// The names of an image's final filesystem, as a copy from it needs them, are made
// layer by layer and kept by the layers they come from (cache/headers/KEY.json): the
// names of an image's first n layers are those of its first n-1 with its n-th applied
// over them, so a copy out of an image that differs from the last one in its top layer
// (a build after a change of its sources) reads that layer only, not its builder's.

// whiteoutPrefix and opaqueWhiteout mark, in an OCI layer, a path removed and a
// directory whose lower contents are hidden.
const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// whiteout reports whether p (a layer's entry, cleaned) is a whiteout, and what it
// hides: the path it removes, or with opaque the directory whose lower contents it
// hides.
func whiteout(p string) (gone string, opaque, ok bool) {
	dir, base := path.Dir(p), path.Base(p)
	switch {
	case base == opaqueWhiteout:
		return dir, true, true
	case strings.HasPrefix(base, whiteoutPrefix):
		return path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)), false, true
	}
	return "", false, false
}

// header is what a copy needs of a name of an image's filesystem.
type header struct {
	Type byte   `json:"t"`
	Mode int64  `json:"m"`
	Size int64  `json:"s,omitempty"`
	Link string `json:"l,omitempty"`
}

func (h header) tar() *tar.Header {
	return &tar.Header{Typeflag: h.Type, Mode: h.Mode, Size: h.Size, Linkname: h.Link}
}

// headerCache holds the names of layer stacks, by the key of their diff IDs.
type headerCache struct{ dir string }

func (c headerCache) path(ids []v1.Hash) string {
	return filepath.Join(c.dir, key(map[string]any{"kind": "headers", "layers": ids})+".json")
}

func (c headerCache) load(ids []v1.Hash) (map[string]header, bool) {
	b, err := os.ReadFile(c.path(ids))
	if err != nil {
		return nil, false
	}
	var m map[string]header
	if json.Unmarshal(b, &m) != nil {
		return nil, false
	}
	return m, true
}

func (c headerCache) store(ids []v1.Hash, m map[string]header) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if os.MkdirAll(c.dir, dirPerm) == nil {
		atomicfile.Write(c.path(ids), b, filePerm) // a cache: a failed write costs a read next time
	}
}

// layerHeaders returns the names of img's final filesystem, each path ("/a/b") to its
// header, whiteouts applied: from the cache for the longest stack of its bottom layers
// it holds, then reading each layer above it once.
func (c headerCache) layerHeaders(img v1.Image) (map[string]*tar.Header, error) {
	ids, err := diffIDs(img)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != len(ids) {
		return nil, fmt.Errorf("the image has %d layers and %d diff IDs", len(layers), len(ids))
	}
	names := map[string]header{"/": {Type: tar.TypeDir, Mode: 0o755}}
	from := 0
	for n := len(ids); n > 0; n-- {
		if m, ok := c.load(ids[:n]); ok {
			names, from = m, n
			break
		}
	}
	for i := from; i < len(layers); i++ {
		if err := applyLayer(names, layers[i]); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, ids[i], err)
		}
		c.store(ids[:i+1], names)
	}
	out := make(map[string]*tar.Header, len(names))
	for p, h := range names {
		out[p] = h.tar()
	}
	return out, nil
}

// applyLayer applies one layer over names as an overlay does: a whiteout removes the
// path below and everything under it, an opaque whiteout the directory's lower
// contents, and a name that is not a directory hides a lower directory's contents.
// Parents no layer names are directories.
func applyLayer(names map[string]header, l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var upper []struct {
		p string
		h header
	}
	removeUnder := func(dir string) {
		prefix := strings.TrimSuffix(dir, "/") + "/"
		for p := range names {
			if strings.HasPrefix(p, prefix) {
				delete(names, p)
			}
		}
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		p := path.Clean("/" + h.Name)
		gone, opaque, isWhiteout := whiteout(p)
		switch {
		case isWhiteout && opaque:
			removeUnder(gone)
		case isWhiteout:
			delete(names, gone)
			removeUnder(gone)
		default:
			upper = append(upper, struct {
				p string
				h header
			}{p, header{Type: h.Typeflag, Mode: h.Mode, Size: h.Size, Link: h.Linkname}})
		}
	}
	// The layer's own names after its whiteouts, which hide lower layers only.
	for _, u := range upper {
		if old, ok := names[u.p]; ok && old.Type == tar.TypeDir && u.h.Type != tar.TypeDir {
			removeUnder(u.p)
		}
		names[u.p] = u.h
		for d := path.Dir(u.p); ; d = path.Dir(d) {
			if _, ok := names[d]; ok {
				break
			}
			names[d] = header{Type: tar.TypeDir, Mode: 0o755}
		}
	}
	return nil
}
