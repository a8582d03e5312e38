package imagestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/package-url/packageurl-go"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// Package is one OS package an image's SBOM lists.
type Package struct {
	Type    string // the purl type: "deb", "apk"
	Name    string
	Version string
}

// osPackageTypes are the purl types of OS package managers.
var osPackageTypes = []string{"deb", "apk", "rpm"}

// sbomsDir holds, for images baked but not recorded (a plan's bake), the digest of
// each one's SBOM, in a file named for the image's digest.
const sbomsDir = "sboms"

// RecordSBOM notes that sbom is the SBOM of the image with manifest digest image,
// without recording the image in the index: a plan's bake, whose image is not
// current, but whose packages plan compares with the running image's.
func (s *Store) RecordSBOM(image, sbom v1.Hash) error {
	dir := filepath.Join(s.dir, sbomsDir)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("noting the SBOM of %s: %w", image, err)
	}
	return atomicfile.Write(filepath.Join(dir, image.Algorithm+"-"+image.Hex), []byte(sbom.String()+"\n"), filePerm)
}

// sbomOf is the digest of the SBOM of the image with manifest digest h: the index's, else
// one RecordSBOM noted; the zero hash if the image has none.
func (s *Store) sbomOf(h v1.Hash) (v1.Hash, error) {
	entries, err := s.Entries()
	if err != nil {
		return v1.Hash{}, err
	}
	if i := slices.IndexFunc(entries, func(e Entry) bool { return e.Digest == h }); i >= 0 {
		return entries[i].SBOM, nil
	}
	b, err := os.ReadFile(filepath.Join(s.dir, sbomsDir, h.Algorithm+"-"+h.Hex))
	if errors.Is(err, fs.ErrNotExist) {
		return v1.Hash{}, fmt.Errorf("image %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return v1.Hash{}, err
	}
	return v1.NewHash(strings.TrimSpace(string(b)))
}

// Packages returns the OS packages the SBOM of the image with manifest digest h lists,
// by name. An image baked without an SBOM has none: nil, no error.
func (s *Store) Packages(h v1.Hash) (map[string]Package, error) {
	sbom, err := s.sbomOf(h)
	if err != nil {
		return nil, err
	}
	if sbom == (v1.Hash{}) {
		return nil, nil
	}
	b, err := s.readBlob(sbom)
	if err != nil {
		return nil, fmt.Errorf("the SBOM of image %s: %w", h, err)
	}
	var doc struct {
		Components []struct {
			PURL string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("the SBOM of image %s: %w", h, err)
	}
	pkgs := map[string]Package{}
	for _, c := range doc.Components {
		p, err := packageurl.FromString(c.PURL)
		if err != nil || !slices.Contains(osPackageTypes, p.Type) {
			continue
		}
		pkgs[p.Name] = Package{Type: p.Type, Name: p.Name, Version: p.Version}
	}
	return pkgs, nil
}

// PackageChanges describes how the OS packages of an image differ from another's, one
// line per package in name order: "+ NAME VERSION" added, "- NAME VERSION" removed,
// "~ NAME OLD → NEW" another version.
func PackageChanges(from, to map[string]Package) []string {
	var names []string
	for n := range from {
		names = append(names, n)
	}
	for n := range to {
		if _, ok := from[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		a, inFrom := from[n]
		b, inTo := to[n]
		switch {
		case !inFrom:
			out = append(out, "+ "+n+" "+b.Version)
		case !inTo:
			out = append(out, "- "+n+" "+a.Version)
		case a.Version != b.Version:
			out = append(out, "~ "+n+" "+a.Version+" → "+b.Version)
		}
	}
	return out
}

// hashOf parses "sha256:HEX" (a driver's image field), or returns false.
func hashOf(s string) (v1.Hash, bool) {
	h, err := v1.NewHash(strings.TrimSpace(s))
	return h, err == nil
}

// ImagePackageChanges is PackageChanges between the images with manifest digests from
// and to ("sha256:..."); nil when either is unknown here or has no SBOM, since plan
// output must not fail for want of it.
func (s *Store) ImagePackageChanges(from, to string) []string {
	fh, ok1 := hashOf(from)
	th, ok2 := hashOf(to)
	if !ok1 || !ok2 || fh == th {
		return nil
	}
	a, err := s.Packages(fh)
	if err != nil || a == nil {
		return nil
	}
	b, err := s.Packages(th)
	if err != nil || b == nil {
		return nil
	}
	return PackageChanges(a, b)
}
