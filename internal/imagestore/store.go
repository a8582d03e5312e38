package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// ErrNotFound means the store has no image (Find) or blob (Blob, Image) by that name or
// digest. Match it with errors.Is.
var ErrNotFound = errors.New("image not found in the store")

// Store is the local image store: an OCI image layout under the state directory. Blobs
// and index.json are written by temp file, fsync and rename, so a writer killed at any
// point leaves the store as it was before, plus at most some unreferenced blobs that
// the next prune removes.
//
// Writers (WriteBlob, WriteBytes, NewBlobWriter, PutImage, Record, Prune) must hold the
// lock (Lock), across processes; readers (Entries, Find, Image, Blob, HasBlob) need
// not, since every file they read is replaced atomically. A Store is safe for
// concurrent use by readers; writers in one process serialize Record themselves.
type Store struct {
	dir  string // the layout directory
	root string // the state directory
}

// The store's directories and files are its owner's only: a layer holds the files of an
// image with their in-image modes, and a 0600 file copied into an image must not become
// readable by every user of the host through the store.
const (
	dirPerm  os.FileMode = 0o700
	filePerm os.FileMode = 0o600
)

// Open opens the store in stateDir (e.g. ".kiln"), at stateDir/images, creating it if
// needed, and fixes the modes of a store an older kiln made public. It does not lock
// the store. It is idempotent.
func Open(stateDir string) (*Store, error) {
	// Absolute, so that tools run in other directories (go build) write where we read.
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	s := &Store{root: stateDir, dir: filepath.Join(stateDir, "images")}
	if err := os.MkdirAll(filepath.Join(s.dir, "blobs", "sha256"), dirPerm); err != nil {
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

// restrict fixes a store made by an older kiln, whose blobs were 0644: the lock file,
// and the layout and the writers' temp directory, each walked once, when its top is not
// yet dirPerm; the top is set last, so an interrupted fix is redone at the next open.
func (s *Store) restrict() error {
	if err := os.Chmod(s.lockPath(), filePerm); err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, top := range []string{s.dir, s.TempDir()} {
		if err := PrivateTree(top); err != nil {
			return err
		}
	}
	return nil
}

// PrivateTree makes the tree at top its owner's only (directories 0700, regular files
// 0600) when top is not 0700 yet; top is set last, so an interrupted walk is redone at
// the next call. A missing top is not an error. It is idempotent. Bake uses it for the
// caches it keeps beside the store.
func PrivateTree(top string) error {
	info, err := os.Lstat(top)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.Mode().Perm() == dirPerm {
		return nil
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
	return os.Chmod(top, dirPerm)
}

// Dir is the OCI image layout directory.
func (s *Store) Dir() string { return s.dir }

// StateDir is the state directory the store is in, absolute: other data of its writers
// (bake's step cache and Go caches) is kept beside the store, under it.
func (s *Store) StateDir() string { return s.root }

// TempDir is the writers' scratch directory (stateDir/tmp), for files a writer needs
// only while it holds the lock: whatever is in it is removed when the lock is next
// taken. Open does not create it.
func (s *Store) TempDir() string { return filepath.Join(s.root, "tmp") }

func (s *Store) lockPath() string { return filepath.Join(s.root, "lock") }

// Lock takes the store's writer lock, blocking while another process holds it, until
// ctx ends. The lock is released by the returned function, or by the process exiting.
// Taking it removes what a killed writer left: partial blobs and TempDir's contents.
// The lock is not reentrant: a process that holds it and calls Lock again waits.
func (s *Store) Lock(ctx context.Context) (unlock func(), err error) {
	fl := flock.New(s.lockPath())
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
// outputs in TempDir. Called with the lock held, so no live writer owns them.
func (s *Store) removeTemps() {
	matches, _ := filepath.Glob(filepath.Join(s.dir, "blobs", "sha256", ".*.tmp"))
	tmps, _ := filepath.Glob(filepath.Join(s.TempDir(), "*"))
	for _, m := range append(matches, tmps...) {
		os.RemoveAll(m)
	}
}
