package imagestore

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

// HasBlob reports whether the blob is present. It does not block.
func (s *Store) HasBlob(h v1.Hash) bool {
	_, err := os.Stat(s.blobPath(h))
	return err == nil
}

// Blob opens a blob; the caller closes it. A missing blob is an error wrapping
// ErrNotFound.
func (s *Store) Blob(h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(s.blobPath(h))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	return f, err
}

func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	r, err := s.Blob(h)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// BlobWriter streams a blob of not-yet-known digest into the store: written to a temp
// file, hashed while written, and made visible under its digest by Commit. Not safe for
// concurrent use.
type BlobWriter struct {
	f      *os.File
	h      hash.Hash
	n      int64
	s      *Store
	closed bool
}

// NewBlobWriter starts a blob. The caller holds the lock, and ends the blob with Commit
// or Abort (Abort after Commit does nothing, so it can be deferred).
func (s *Store) NewBlobWriter() (*BlobWriter, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "blobs", "sha256"), ".blob.*.tmp")
	if err != nil {
		return nil, err
	}
	return &BlobWriter{f: f, h: sha256.New(), s: s}, nil
}

// Write appends p to the blob.
func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Commit fsyncs the blob and makes it visible under its digest, which it returns with
// the blob's size. If want is non-zero the content must have that digest, else nothing
// is stored. Committing a blob the store holds already replaces it with the same bytes.
func (w *BlobWriter) Commit(want v1.Hash) (v1.Hash, int64, error) {
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
func (w *BlobWriter) Abort() {
	if !w.closed {
		w.closed = true
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// WriteBlob stores what open returns under digest want, unless the store holds that
// blob already (then open is not called). It is idempotent; content of another digest
// is an error and is not stored. The caller holds the lock.
func (s *Store) WriteBlob(want v1.Hash, open func() (io.ReadCloser, error)) error {
	if s.HasBlob(want) {
		return nil
	}
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := s.NewBlobWriter()
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

// WriteBytes stores b as a blob and returns its digest. It is idempotent. The caller
// holds the lock.
func (s *Store) WriteBytes(b []byte) (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return h, err
	}
	return h, s.WriteBlob(h, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
