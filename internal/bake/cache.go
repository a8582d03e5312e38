package bake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/internal/imagestore"
)

// cacheVersion is part of every cache key: bump it when a change to kiln would make a
// step produce different bytes from the same inputs.
const cacheVersion = "kiln-layer-v1"

// cache maps the hash of a step's inputs to the layer the step produced. An entry is
// only trusted while its layer blob is still in the store.
type cache struct{ dir string }

// built is what a step produced: its layer, and what the SBOM needs to know about it.
type built struct {
	Key   string       `json:"key"`
	Layer layerDesc    `json:"layer"`
	Files []fileRecord `json:"files"`
	Go    *goRecord    `json:"go,omitempty"`
	// Debian is the packages of a debian step's layer.
	Debian *debRecord `json:"debian,omitempty"`
}

type fileRecord struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// bake's files in the state directory (the step cache, the OS inventories, build
// outputs) are its owner's only, as the store's are: a cache entry names the files of
// an image, and a build output is one.
const (
	dirPerm  os.FileMode = 0o700
	filePerm os.FileMode = 0o600
)

// newCache opens the step cache in stateDir/cache/layers, creating it if needed, and
// makes a cache an older kiln left readable by others private.
func newCache(stateDir string) (*cache, error) {
	top := filepath.Join(stateDir, "cache")
	dir := filepath.Join(top, "layers")
	if err := os.Chmod(top, dirPerm); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := imagestore.PrivateTree(dir); err != nil {
		return nil, err
	}
	return &cache{dir: dir}, os.MkdirAll(dir, dirPerm)
}

// key hashes a step's inputs: any JSON-encodable value that holds all of them.
func key(inputs any) string {
	b, err := json.Marshal(struct {
		Version string
		Inputs  any
	}{cacheVersion, inputs})
	if err != nil {
		panic("bake: cache key inputs must encode as JSON: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (c *cache) get(s *imagestore.Store, key string) (*built, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, key+".json"))
	if err != nil {
		return nil, false
	}
	var e built
	if json.Unmarshal(b, &e) != nil || e.Key != key || !s.HasBlob(e.Layer.Digest) {
		return nil, false
	}
	return &e, true
}

func (c *cache) put(e *built) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.dir, e.Key+".json"), b, filePerm)
}

// baseEntry maps the key of a base read from an archive or the Docker engine to the
// image it was stored as (see Baker.cachedBase).
type baseEntry struct {
	Key      string  `json:"key"`
	Manifest v1.Hash `json:"manifest"`
}

func (c *cache) basePath(key string) string {
	return filepath.Join(filepath.Dir(c.dir), "bases", key+".json")
}

// getBase returns the stored image of a base, while the store still holds all of it
// (a prune removes the blobs of bases no stored image is built on).
func (c *cache) getBase(s *imagestore.Store, key string) (v1.Image, bool) {
	b, err := os.ReadFile(c.basePath(key))
	if err != nil {
		return nil, false
	}
	var e baseEntry
	if json.Unmarshal(b, &e) != nil || e.Key != key {
		return nil, false
	}
	img, err := s.Image(e.Manifest)
	if err != nil {
		return nil, false
	}
	m, err := img.Manifest()
	if err != nil || !s.HasBlob(m.Config.Digest) {
		return nil, false
	}
	for _, l := range m.Layers {
		if !s.HasBlob(l.Digest) {
			return nil, false
		}
	}
	return img, true
}

func (c *cache) putBase(key string, manifest v1.Hash) error {
	b, err := json.Marshal(baseEntry{Key: key, Manifest: manifest})
	if err != nil {
		return err
	}
	p := c.basePath(key)
	if err := os.MkdirAll(filepath.Dir(p), dirPerm); err != nil {
		return err
	}
	return atomicfile.Write(p, b, filePerm)
}
