package bake

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// tarOf is a tar archive of files (path → content), in the order given by paths.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range sortedKeys(files) {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(files[p])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[p])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sortedKeys(m map[string]string) []string {
	ks := keys(m)
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// baseFiles is the filesystem of the test's base images: a small Debian.
var baseFiles = map[string]string{
	"etc/os-release": "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
	"var/lib/dpkg/status": "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.4+deb12u5\n\n" +
		"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n shared libraries\n\n" +
		"Package: removed\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n",
}

// testBase is a one-layer linux/amd64 image holding files.
func testBase(t *testing.T, files map[string]string) v1.Image {
	t.Helper()
	raw := tarOf(t, files)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(scratch(), l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// basesProject writes a spec with one image on every kind of base into dir, with the
// bases it names. extra is added to the spec.
func basesProject(t *testing.T, dir, registryRef, extra string) {
	t.Helper()
	img := testBase(t, baseFiles)
	p, err := layout.Write(filepath.Join(dir, "bases", "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "bases", "rootfs.tar"), string(tarOf(t, baseFiles)))
	writeFile(t, filepath.Join(dir, "kiln.hcl"), fmt.Sprintf(`
image "scratch" {
  from = "scratch"
  file "/etc/motd" { content = "scratch\n" }
}
image "child" {
  from = image.scratch
  file "/etc/child" { content = "child\n" }
}
image "layout" {
  from     = "./bases/layout"
  platform = "linux/amd64"
  file "/etc/motd" { content = "layout\n" }
}
image "rootfs" {
  from = "./bases/rootfs.tar"
  file "/etc/motd" { content = "rootfs\n" }
}
image "registry" {
  from     = %q
  platform = "linux/amd64"
  file "/etc/motd" { content = "registry\n" }
}
%s`, registryRef, extra))
}

// TestEveryBaseIsReproducibleAcrossPaths bakes one image on each kind of base from two
// copies of a project at different paths: every image, and its SBOM, must be the same,
// and none may hold either path.
func TestEveryBaseIsReproducibleAcrossPaths(t *testing.T) {
	reg := startRegistry(t)
	ref := reg + "/bases/debian:12"
	pushImage(t, ref, testBase(t, baseFiles))

	a := filepath.Join(t.TempDir(), "first")
	b := filepath.Join(t.TempDir(), "second", "clone")
	basesProject(t, a, ref, "")
	copyTree(t, a, b)

	ra, rb := mustBake(t, a, testEpoch), mustBake(t, b, testEpoch)
	if len(ra.results) != 5 {
		t.Fatalf("baked %d images, want 5", len(ra.results))
	}
	for _, x := range ra.results {
		y := rb.result(x.Name)
		if y == nil || x.Digest != y.Digest {
			t.Errorf("image %s: %s at %s, %v at %s", x.Name, x.Digest, a, y, b)
			continue
		}
		if err := validate.Image(x.Image); err != nil {
			t.Errorf("image %s is not valid: %v", x.Name, err)
		}
		sa, sb := readBlob(t, ra.store, x.SBOM), readBlob(t, rb.store, y.SBOM)
		if !bytes.Equal(sa, sb) {
			t.Errorf("image %s: the SBOMs differ", x.Name)
		}
		for what, b := range map[string][]byte{"config": rawConfig(t, x.Image), "manifest": rawManifest(t, x.Image), "SBOM": sa} {
			if p := filepath.Dir(a); bytes.Contains(b, []byte(p)) {
				t.Errorf("image %s: the %s holds the host path %s:\n%s", x.Name, what, p, b)
			}
		}
	}
	// A path base is named as the spec wrote it.
	cf, _ := ra.result("rootfs").Image.ConfigFile()
	if got := cf.History[0].CreatedBy; !strings.Contains(got, "./bases/rootfs.tar") {
		t.Errorf("the rootfs layer's history says %q", got)
	}
}

func readBlob(t *testing.T, s *Store, h v1.Hash) []byte {
	t.Helper()
	b, err := s.readBlob(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rawConfig(t *testing.T, img v1.Image) []byte {
	t.Helper()
	b, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rawManifest(t *testing.T, img v1.Image) []byte {
	t.Helper()
	b, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
