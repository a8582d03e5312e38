package bake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// Annotations kiln puts on the store's index entries (not on images: they describe the
// store, and would break reproducibility inside an image).
const (
	AnnotationName  = "dev.kiln.image.name"
	AnnotationBaked = "dev.kiln.baked"
	AnnotationSBOM  = "dev.kiln.sbom"
	annotationRef   = "org.opencontainers.image.ref.name"
)

// ErrNotFound means the store has no image by that name or digest.
var ErrNotFound = errors.New("image not found in the store")

// Store is the local image store: an OCI image layout under the state directory. Blobs
// and index.json are written by temp file, fsync and rename, so a bake killed at any
// point leaves the store as it was before the bake, plus at most some unreferenced blobs
// that the next prune removes.
//
// Writers must hold the lock (Lock); readers need not, since every file they read is
// replaced atomically.
type Store struct {
	dir  string // the layout directory
	root string // the state directory
}

// Entry is one image in the store.
type Entry struct {
	Name     string
	Digest   v1.Hash
	Size     int64 // manifest, config and layers, compressed
	Created  time.Time
	Revision string
	Source   string
	Baked    time.Time
	SBOM     v1.Hash // zero if the image has none
	// Current is true for the newest bake of each name.
	Current bool
}

// OpenStore opens the store in stateDir (e.g. ".kiln"), creating it if needed.
func OpenStore(stateDir string) (*Store, error) {
	// Absolute, so that tools run in other directories (go build) write where we read.
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	s := &Store{root: stateDir, dir: filepath.Join(stateDir, "images")}
	if err := os.MkdirAll(filepath.Join(s.dir, "blobs", "sha256"), 0o700); err != nil {
		return nil, fmt.Errorf("creating image store: %w", err)
	}
	if err := s.restrict(); err != nil {
		return nil, fmt.Errorf("restricting the image store's permissions: %w", err)
	}
	layoutFile := filepath.Join(s.dir, "oci-layout")
	if _, err := os.Stat(layoutFile); os.IsNotExist(err) {
		if err := atomicfile.Write(layoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`), filePerm); err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.dir, "index.json")); os.IsNotExist(err) {
		if err := s.writeIndex(&v1.IndexManifest{}); err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	}
	return s, nil
}

// The store's directories and files are its owner's only: a layer holds the files of an
// image with their in-image modes, and a 0600 file copied into an image must not become
// readable by every user of the host through the store.
const (
	dirPerm  os.FileMode = 0o700
	filePerm os.FileMode = 0o600
)

// restrict fixes a store made by an older kiln, whose blobs were 0644: it walks the
// store's directories once, when their top is not yet dirPerm, and sets that top last,
// so an interrupted fix is redone at the next open.
func (s *Store) restrict() error {
	for p, perm := range map[string]os.FileMode{"lock": filePerm, "cache": dirPerm} {
		if err := os.Chmod(filepath.Join(s.root, p), perm); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	for _, top := range []string{s.dir, filepath.Join(s.root, "cache", "layers"), filepath.Join(s.root, "tmp")} {
		info, err := os.Lstat(top)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if info.Mode().Perm() == dirPerm {
			continue
		}
		err = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case p == top:
				return nil
			case d.IsDir():
				return os.Chmod(p, dirPerm)
			case d.Type().IsRegular():
				return os.Chmod(p, filePerm)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := os.Chmod(top, dirPerm); err != nil {
			return err
		}
	}
	return nil
}

// goCacheDirs are the go command's caches for sandboxed builds, in the state directory:
// never the caller's own, which a sandboxed build must not write.
func (s *Store) goCacheDirs() goCaches {
	d := filepath.Join(s.root, "cache", "go")
	return goCaches{Mod: filepath.Join(d, "mod"), Build: filepath.Join(d, "build"), Path: filepath.Join(d, "path")}
}

// goCaches creates the sandboxed builds' caches. The module cache is read by the
// sandbox's user, so it is not dirPerm; the state directory above keeps others out.
func (s *Store) goCaches() error {
	c := s.goCacheDirs()
	if err := os.MkdirAll(c.Mod, 0o755); err != nil {
		return fmt.Errorf("creating the Go module cache: %w", err)
	}
	if err := os.MkdirAll(c.Build, dirPerm); err != nil {
		return fmt.Errorf("creating the Go build cache: %w", err)
	}
	return nil
}

// Dir is the OCI image layout directory.
func (s *Store) Dir() string { return s.dir }

// Lock takes the store's writer lock, waiting while another kiln process holds it. The
// lock is released by the returned function, or by the process exiting.
func (s *Store) Lock(ctx context.Context) (unlock func(), err error) {
	fl := flock.New(filepath.Join(s.root, "lock"))
	ok, err := fl.TryLock()
	if err == nil && !ok {
		ok, err = fl.TryLockContext(ctx, 100*time.Millisecond)
	}
	if err != nil || !ok {
		return nil, fmt.Errorf("locking the image store %s (is another kiln bake running?): %w", s.root, errors.Join(err, ctx.Err()))
	}
	s.removeTemps()
	return func() { fl.Unlock() }, nil
}

// removeTemps deletes temp files left by a killed writer: partial blobs, and build
// outputs in tmp/. Called with the lock held, so no live writer owns them.
func (s *Store) removeTemps() {
	matches, _ := filepath.Glob(filepath.Join(s.dir, "blobs", "sha256", ".*.tmp"))
	tmps, _ := filepath.Glob(filepath.Join(s.root, "tmp", "*"))
	for _, m := range append(matches, tmps...) {
		os.RemoveAll(m)
	}
}

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

// HasBlob reports whether the blob is present.
func (s *Store) HasBlob(h v1.Hash) bool {
	_, err := os.Stat(s.blobPath(h))
	return err == nil
}

// Blob opens a blob.
func (s *Store) Blob(h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(s.blobPath(h))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	return f, err
}

// blobWriter streams a blob of not-yet-known digest into the store.
type blobWriter struct {
	f      *os.File
	h      hash.Hash
	n      int64
	s      *Store
	closed bool
}

func (s *Store) newBlobWriter() (*blobWriter, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "blobs", "sha256"), ".blob.*.tmp")
	if err != nil {
		return nil, err
	}
	return &blobWriter{f: f, h: sha256.New(), s: s}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Commit makes the blob visible under its digest. If want is non-zero the content must
// have that digest.
func (w *blobWriter) Commit(want v1.Hash) (v1.Hash, int64, error) {
	w.closed = true
	got := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", w.h.Sum(nil))}
	defer os.Remove(w.f.Name())
	if want != (v1.Hash{}) && got != want {
		w.f.Close()
		return got, w.n, fmt.Errorf("blob content has digest %s, expected %s", got, want)
	}
	if err := w.f.Chmod(filePerm); err != nil {
		w.f.Close()
		return got, w.n, err
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return got, w.n, err
	}
	if err := w.f.Close(); err != nil {
		return got, w.n, err
	}
	if err := os.Rename(w.f.Name(), w.s.blobPath(got)); err != nil {
		return got, w.n, err
	}
	return got, w.n, nil
}

// Abort discards an uncommitted blob.
func (w *blobWriter) Abort() {
	if !w.closed {
		w.closed = true
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// writeBlob stores r under digest want unless it is already present.
func (s *Store) writeBlob(want v1.Hash, open func() (io.ReadCloser, error)) error {
	if s.HasBlob(want) {
		return nil
	}
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := s.newBlobWriter()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return err
	}
	_, _, err = w.Commit(want)
	return err
}

func (s *Store) writeBytes(b []byte) (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return h, err
	}
	return h, s.writeBlob(h, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// putImage writes every blob of img that the store lacks, the manifest last, and
// returns the manifest's descriptor. It does not touch the index.
func (s *Store) putImage(img v1.Image) (v1.Descriptor, error) {
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		if err := s.writeBlob(d, l.Compressed); err != nil {
			return v1.Descriptor{}, fmt.Errorf("storing layer %s: %w", d, err)
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if _, err := s.writeBytes(cfg); err != nil {
		return v1.Descriptor{}, fmt.Errorf("storing config: %w", err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	h, err := s.writeBytes(raw)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("storing manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}, nil
}

func (s *Store) readIndex() (*v1.IndexManifest, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the image store index: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("the image store index %s is corrupt (%v): remove %s and bake again", filepath.Join(s.dir, "index.json"), err, s.dir)
	}
	return &idx, nil
}

func (s *Store) writeIndex(idx *v1.IndexManifest) error {
	idx.SchemaVersion = 2
	idx.MediaType = types.OCIImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, "index.json"), append(b, '\n'), filePerm)
}

// record makes desc the current image of name. Earlier bakes of the name stay in the
// store (a revision may still need them) until pruned. The caller holds the lock.
func (s *Store) record(name string, desc v1.Descriptor, sbom v1.Hash, baked time.Time) error {
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d v1.Descriptor) bool {
		return d.Annotations[AnnotationName] == name && d.Digest == desc.Digest
	})
	for i, d := range idx.Manifests {
		if d.Annotations[AnnotationName] == name {
			delete(idx.Manifests[i].Annotations, annotationRef)
		}
	}
	desc.Annotations = map[string]string{
		AnnotationName:  name,
		annotationRef:   name,
		AnnotationBaked: baked.UTC().Format(time.RFC3339),
	}
	if sbom != (v1.Hash{}) {
		desc.Annotations[AnnotationSBOM] = sbom.String()
	}
	idx.Manifests = append(idx.Manifests, desc)
	return s.writeIndex(idx)
}

// Entries lists the images in the store, oldest bake first.
func (s *Store) Entries() ([]Entry, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range idx.Manifests {
		e := Entry{Name: d.Annotations[AnnotationName], Digest: d.Digest, Current: d.Annotations[annotationRef] != ""}
		e.Baked, _ = time.Parse(time.RFC3339, d.Annotations[AnnotationBaked])
		if sb := d.Annotations[AnnotationSBOM]; sb != "" {
			e.SBOM, _ = v1.NewHash(sb)
		}
		m, err := s.manifest(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("image %s %s: %w", e.Name, d.Digest, err)
		}
		e.Size = d.Size + m.Config.Size
		for _, l := range m.Layers {
			e.Size += l.Size
		}
		e.Created, _ = time.Parse(time.RFC3339, m.Annotations[AnnotationCreated])
		e.Revision = m.Annotations[AnnotationRevision]
		e.Source = m.Annotations[AnnotationSource]
		out = append(out, e)
	}
	return out, nil
}

func (s *Store) manifest(h v1.Hash) (*v1.Manifest, error) {
	r, err := s.Blob(h)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return v1.ParseManifest(r)
}

// Find returns the current image named ref, or the image whose digest is ref or starts
// with ref (as "sha256:abc" or "abc", at least 4 hex digits), or name@digest.
func (s *Store) Find(ref string) (Entry, error) {
	entries, err := s.Entries()
	if err != nil {
		return Entry{}, err
	}
	name, dig, hasDigest := strings.Cut(ref, "@")
	if !hasDigest {
		dig = ref
	}
	dig = strings.TrimPrefix(dig, "sha256:")
	var found []Entry
	for _, e := range entries {
		switch {
		case hasDigest && e.Name == name && strings.HasPrefix(e.Digest.Hex, dig):
			found = append(found, e)
		case !hasDigest && e.Name == ref && e.Current:
			return e, nil
		case !hasDigest && len(dig) >= 4 && strings.HasPrefix(e.Digest.Hex, dig):
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return Entry{}, fmt.Errorf("%q: %w (run `kiln images` to list it)", ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	if slices.IndexFunc(found[1:], func(e Entry) bool { return e.Digest != found[0].Digest }) < 0 {
		return found[len(found)-1], nil
	}
	return Entry{}, fmt.Errorf("%q matches %d images: give more digits", ref, len(found))
}

// Image returns the stored image with manifest digest h.
func (s *Store) Image(h v1.Hash) (v1.Image, error) {
	return s.imageByDigest(h)
}

// PruneResult says what Prune removed.
type PruneResult struct {
	Images []Entry
	Blobs  int
	Bytes  int64
}

// Prune removes every image that is neither the current image of its name nor in keep,
// then every blob no remaining image uses. The caller holds the lock.
func (s *Store) Prune(keep map[v1.Hash]bool) (PruneResult, error) {
	var res PruneResult
	entries, err := s.Entries()
	if err != nil {
		return res, err
	}
	idx, err := s.readIndex()
	if err != nil {
		return res, err
	}
	kept := map[v1.Hash]bool{}
	for _, e := range entries {
		if e.Current || keep[e.Digest] {
			kept[e.Digest] = true
		}
	}
	for _, e := range entries {
		if !kept[e.Digest] {
			res.Images = append(res.Images, e)
		}
	}
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d v1.Descriptor) bool { return !kept[d.Digest] })
	if err := s.writeIndex(idx); err != nil {
		return res, err
	}

	live := map[string]bool{}
	for _, d := range idx.Manifests {
		live[d.Digest.Hex] = true
		if sb := d.Annotations[AnnotationSBOM]; sb != "" {
			live[strings.TrimPrefix(sb, "sha256:")] = true
		}
		m, err := s.manifest(d.Digest)
		if err != nil {
			return res, err
		}
		live[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			live[l.Digest.Hex] = true
		}
	}
	blobs, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	if err != nil {
		return res, err
	}
	for _, b := range blobs {
		if live[b.Name()] {
			continue
		}
		if info, err := b.Info(); err == nil {
			res.Bytes += info.Size()
		}
		if err := os.Remove(filepath.Join(s.dir, "blobs", "sha256", b.Name())); err == nil {
			res.Blobs++
		}
	}
	return res, nil
}
