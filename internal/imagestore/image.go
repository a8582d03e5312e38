package imagestore

import (
	"bytes"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image returns the stored image with manifest digest h, whether or not the index
// lists it (PutImage stored it, Record did not list it yet). Its config and layers are
// read from the store's blobs when asked for. A missing manifest is an error wrapping
// ErrNotFound; a blob that is not an image manifest is another error. It does not
// block on the lock.
func (s *Store) Image(h v1.Hash) (v1.Image, error) {
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
