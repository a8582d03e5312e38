package imagestore

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// putWithPackages stores a random image whose SBOM lists the given purls.
func putWithPackages(t *testing.T, s *Store, name string, purls ...string) v1.Hash {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := s.PutImage(img)
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"bomFormat":"CycloneDX","components":[`
	for i, p := range purls {
		if i > 0 {
			doc += ","
		}
		doc += `{"type":"library","purl":"` + p + `"}`
	}
	sbom, err := s.WriteBytes([]byte(doc + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Record(name, desc, sbom, time.Now()); err != nil {
		t.Fatal(err)
	}
	return desc.Digest
}

func TestPackageChanges(t *testing.T) {
	s := open(t)
	old := putWithPackages(t, s, "py",
		"pkg:deb/debian/libc6@2.36-9%2Bdeb12u13?arch=amd64&distro=bookworm",
		"pkg:deb/debian/python3@3.11.2-1%2Bb1?arch=amd64&distro=bookworm",
		"pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=bookworm",
		"pkg:golang/golang.org/x/net@v0.30.0", // not an OS package
	)
	cur := putWithPackages(t, s, "py",
		"pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=bookworm",
		"pkg:deb/debian/python3@3.11.2-1%2Bb1?arch=amd64&distro=bookworm",
		"pkg:deb/debian/ca-certificates@20230311?arch=all&distro=bookworm",
	)
	pkgs, err := s.Packages(cur)
	if err != nil {
		t.Fatal(err)
	}
	if got := pkgs["libc6"]; got != (Package{Type: "deb", Name: "libc6", Version: "2.36-9+deb12u14"}) {
		t.Errorf("libc6 read as %+v", got)
	}
	want := []string{
		"+ ca-certificates 20230311",
		"~ libc6 2.36-9+deb12u13 → 2.36-9+deb12u14",
		"- tzdata 2024a-0+deb12u1",
	}
	if got := s.ImagePackageChanges(old.String(), cur.String()); !slices.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
	if got := s.ImagePackageChanges(cur.String(), cur.String()); got != nil {
		t.Errorf("an image against itself: %q", got)
	}
	// What the store does not know gives no changes rather than an error.
	if got := s.ImagePackageChanges("sha256:"+old.Hex[:10], cur.String()); got != nil {
		t.Errorf("a malformed digest: %q", got)
	}
	unknown := v1.Hash{Algorithm: "sha256", Hex: "00" + old.Hex[2:]}
	if got := s.ImagePackageChanges(unknown.String(), cur.String()); got != nil {
		t.Errorf("an unknown image: %q", got)
	}
	if _, err := s.Packages(unknown); err == nil {
		t.Error("Packages of an unknown image: no error")
	}
}

// TestPackagesOfAPlannedImage: an image baked for a plan is not recorded, but the SBOM
// RecordSBOM notes for it gives its packages.
func TestPackagesOfAPlannedImage(t *testing.T) {
	s := open(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := s.PutImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Packages(desc.Digest); err == nil {
		t.Fatal("Packages of an image with no SBOM anywhere: no error")
	}
	sbom, err := s.WriteBytes([]byte(`{"components":[{"purl":"pkg:deb/debian/openssl@3.0.22-1~deb12u2?arch=amd64"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSBOM(desc.Digest, sbom); err != nil {
		t.Fatal(err)
	}
	pkgs, err := s.Packages(desc.Digest)
	if err != nil || pkgs["openssl"].Version != "3.0.22-1~deb12u2" {
		t.Fatalf("Packages = %v, %v", pkgs, err)
	}
	if es, _ := s.Entries(); len(es) != 0 {
		t.Errorf("RecordSBOM recorded the image: %v", es)
	}
	// A prune removes the planned image's blobs, and its note with them.
	if _, err := s.Prune(nil); err != nil {
		t.Fatal(err)
	}
	if notes, _ := os.ReadDir(filepath.Join(s.Dir(), sbomsDir)); len(notes) != 0 {
		t.Errorf("notes left after a prune: %v", notes)
	}
}
