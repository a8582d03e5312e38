package bake

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/imagestore"
)

// entry is one file, directory or symlink of a layer, with the owner, mode and content
// it will have in the image (not on disk).
type entry struct {
	Path     string // absolute path in the image
	Type     byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	Mode     int64  // permission bits
	UID, GID int
	Size     int64
	Link     string                        // symlink target
	Data     []byte                        // content, if not opened from disk
	SHA256   string                        // hex digest of the content, for the cache key and the SBOM
	open     func() (io.ReadCloser, error) // the file on disk to read content from; overrides Data
}

func (e *entry) reader() (io.ReadCloser, error) {
	switch {
	case e.open != nil:
		return e.open()
	default:
		return io.NopCloser(strings.NewReader(string(e.Data))), nil
	}
}

// layerDesc is what the cache and the image need to know of a stored layer.
type layerDesc struct {
	Digest    v1.Hash         `json:"digest"`
	DiffID    v1.Hash         `json:"diffID"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
}

// writeLayer writes entries as a reproducible gzip-compressed tar into the store: entries
// sorted by path, every missing parent directory added (root-owned, 0755), every
// timestamp set to mtime, no user or group names, and gzip at a fixed level with no name
// or time in its header. The same entries and mtime give the same bytes. The caller
// holds the store's lock.
func writeLayer(s *imagestore.Store, entries []entry, mtime time.Time) (layerDesc, error) {
	entries = withParents(entries)
	return writeTarLayer(s, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for i := range entries {
			if err := writeEntry(tw, &entries[i], mtime); err != nil {
				return fmt.Errorf("adding %s: %w", entries[i].Path, err)
			}
		}
		return tw.Close()
	})
}

// writeTarLayer stores the tar that write writes as a layer blob, gzip-compressed as
// writeLayer's are, and returns its descriptor (the diff ID is the tar's digest).
func writeTarLayer(s *imagestore.Store, write func(io.Writer) error) (layerDesc, error) {
	w, err := s.NewBlobWriter()
	if err != nil {
		return layerDesc{}, err
	}
	defer w.Abort()
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return layerDesc{}, err
	}
	diff := sha256.New()
	if err := write(io.MultiWriter(zw, diff)); err != nil {
		return layerDesc{}, err
	}
	if err := zw.Close(); err != nil {
		return layerDesc{}, err
	}
	d, n, err := w.Commit(v1.Hash{})
	if err != nil {
		return layerDesc{}, err
	}
	return layerDesc{
		Digest:    d,
		DiffID:    v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", diff.Sum(nil))},
		Size:      n,
		MediaType: types.OCILayer,
	}, nil
}

func writeEntry(tw *tar.Writer, e *entry, mtime time.Time) error {
	name := strings.TrimPrefix(e.Path, "/")
	if e.Type == tar.TypeDir {
		name += "/"
	}
	hdr := &tar.Header{
		Typeflag: e.Type,
		Name:     name,
		Linkname: e.Link,
		Mode:     e.Mode,
		Uid:      e.UID,
		Gid:      e.GID,
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}
	if e.Type == tar.TypeReg {
		hdr.Size = e.Size
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if e.Type != tar.TypeReg {
		return nil
	}
	r, err := e.reader()
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(tw, r)
	if err != nil {
		return err
	}
	if n != e.Size {
		return fmt.Errorf("file changed size while being read (%d bytes, expected %d): bake again", n, e.Size)
	}
	return nil
}

// withParents returns entries sorted by path with a directory entry for every parent
// that has none, so the layer extracts the same way on every runtime.
func withParents(entries []entry) []entry {
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Path] = true
	}
	out := append([]entry(nil), entries...)
	for _, e := range entries {
		for dir := path.Dir(e.Path); dir != "/" && !have[dir]; dir = path.Dir(dir) {
			have[dir] = true
			out = append(out, entry{Path: dir, Type: tar.TypeDir, Mode: 0o755})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// storedLayer is a v1.Layer whose compressed bytes are a blob in the store.
type storedLayer struct {
	s *imagestore.Store
	d layerDesc
}

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *storedLayer) DiffID() (v1.Hash, error)            { return l.d.DiffID, nil }
func (l *storedLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *storedLayer) Compressed() (io.ReadCloser, error)  { return l.s.Blob(l.d.Digest) }
func (l *storedLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.s.Blob(l.d.Digest)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, rc}, nil
}

var _ v1.Layer = (*storedLayer)(nil)
