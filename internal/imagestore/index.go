package imagestore

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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

// Standard OCI annotations of an image's manifest that Entries reads (bake sets them).
const (
	annotationCreated  = "org.opencontainers.image.created"
	annotationSource   = "org.opencontainers.image.source"
	annotationRevision = "org.opencontainers.image.revision"
)

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

// PutImage writes every blob of img that the store lacks, the manifest last, and
// returns the manifest's descriptor. It does not touch the index: the image is in the
// store (Image finds it) but not listed (Entries, Find) until Record. It is idempotent.
// The caller holds the lock.
func (s *Store) PutImage(img v1.Image) (v1.Descriptor, error) {
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		if err := s.WriteBlob(d, l.Compressed); err != nil {
			return v1.Descriptor{}, fmt.Errorf("storing layer %s: %w", d, err)
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if _, err := s.WriteBytes(cfg); err != nil {
		return v1.Descriptor{}, fmt.Errorf("storing config: %w", err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	h, err := s.WriteBytes(raw)
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

// Record lists desc (an image PutImage stored) in the index as the current image of
// name, baked at baked, with the SBOM blob sbom (zero for none). Earlier images of the
// name stay in the store (a revision may still need them) until pruned; recording the
// same image again moves it to the end, as the newest bake. The caller holds the lock,
// and serializes its own calls: Record reads, changes and replaces index.json.
func (s *Store) Record(name string, desc v1.Descriptor, sbom v1.Hash, baked time.Time) error {
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

// Entries lists the images in the store's index, oldest bake first. It reads the index
// and each image's manifest; it does not block on the lock.
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
		e.Created, _ = time.Parse(time.RFC3339, m.Annotations[annotationCreated])
		e.Revision = m.Annotations[annotationRevision]
		e.Source = m.Annotations[annotationSource]
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
// with ref (as "sha256:abc" or "abc", at least 4 hex digits), or name@digest (a prefix
// of the digest will do). No match is an error wrapping ErrNotFound; a prefix that
// matches several images is another error. It does not block on the lock.
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

// PruneResult says what Prune removed.
type PruneResult struct {
	Images []Entry
	Blobs  int
	Bytes  int64
}

// Prune removes from the index every image that is neither the current image of its
// name nor in keep, then deletes every blob no remaining image uses (its manifest,
// config, layers and SBOM). It is idempotent. The caller holds the lock.
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
	// The SBOM notes of plans' images (RecordSBOM) whose image is gone with its blobs.
	notes, _ := os.ReadDir(filepath.Join(s.dir, sbomsDir))
	for _, n := range notes {
		if hex, ok := strings.CutPrefix(n.Name(), "sha256-"); !ok || !live[hex] {
			os.Remove(filepath.Join(s.dir, sbomsDir, n.Name()))
		}
	}
	return res, nil
}
