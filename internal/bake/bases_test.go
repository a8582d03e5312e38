package bake

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/driver/docker/dockerimage"
	"github.com/kiln-build/kiln/internal/imagestore"
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
	tag, _ := name.NewTag("kiln.test/saved:1")
	if err := tarball.WriteToFile(filepath.Join(dir, "bases", "saved.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "bases", "oci.tar"), string(tarOfDir(t, filepath.Join(dir, "bases", "layout"))))
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
image "archive" {
  from     = "./bases/saved.tar"
  platform = "linux/amd64"
  file "/etc/motd" { content = "archive\n" }
}
image "ociarchive" {
  from     = "./bases/oci.tar"
  platform = "linux/amd64"
  file "/etc/motd" { content = "oci archive\n" }
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

	docker := loadIntoDocker(t, testBase(t, baseFiles))

	a := filepath.Join(t.TempDir(), "first")
	b := filepath.Join(t.TempDir(), "second", "clone")
	basesProject(t, a, ref, fmt.Sprintf(`
image "docker" {
  from     = "docker://%s"
  platform = "linux/amd64"
  file "/etc/motd" { content = "docker\n" }
}`, docker))
	copyTree(t, a, b)

	ra, rb := mustBake(t, a, testEpoch), mustBake(t, b, testEpoch)
	if len(ra.results) != 8 {
		t.Fatalf("baked %d images, want 8", len(ra.results))
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
	// Every image base gives the same filesystem, not the archive's files.
	want := layerFiles(t, ra.result("layout"))
	for _, n := range []string{"archive", "ociarchive", "docker", "registry"} {
		got := layerFiles(t, ra.result(n))
		if got["manifest.json"] != nil || len(got) != len(want) || got["var/lib/dpkg/status"] == nil {
			t.Errorf("image %s holds %v, want %v", n, keys(got), keys(want))
		}
	}
	// A path base is named as the spec wrote it.
	cf, _ := ra.result("rootfs").Image.ConfigFile()
	if got := cf.History[0].CreatedBy; !strings.Contains(got, "./bases/rootfs.tar") {
		t.Errorf("the rootfs layer's history says %q", got)
	}
}

func readBlob(t *testing.T, s *imagestore.Store, h v1.Hash) []byte {
	t.Helper()
	r, err := s.Blob(h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
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

// tarOfDir is a tar of the files under dir, as `tar -C dir -cf - .` writes it.
func tarOfDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// loadIntoDocker loads img into the Docker engine under a tag of its own, removed when
// the test ends, and returns the tag.
func loadIntoDocker(t *testing.T, img v1.Image) string {
	t.Helper()
	tag := fmt.Sprintf("kiln-test/base:%d", time.Now().UnixNano())
	dockerClient(t)
	dockerLoad(t, img, tag)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	return tag
}

// dockerLoad loads img into the engine under tag with `docker load`: bake only reads
// images from the engine, loading them is the Docker driver's.
func dockerLoad(t *testing.T, img v1.Image, tag string) {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(f, ref, img); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("docker", "load", "-q", "-i", f).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
}

// dockerClient returns a client of the engine DOCKER_HOST names. Without an engine the
// test fails (scripts/test starts one), unless -short asks to skip what needs Docker.
func dockerClient(t *testing.T) *dockerimage.Client {
	t.Helper()
	c, err := dockerimage.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(t.Context()); errors.Is(err, dockerimage.ErrUnreachable) && testing.Short() {
		t.Skipf("no Docker engine %s", strings.TrimPrefix(err.Error(), dockerimage.ErrUnreachable.Error()+" "))
	} else if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDockerBaseIsExportedOnce: a re-bake asks the engine for the image's ID and reads
// the rest from the store; an image the engine lacks, or a tag moved to another image,
// is what the engine has now.
func TestDockerBaseIsExportedOnce(t *testing.T) {
	tag := loadIntoDocker(t, testBase(t, baseFiles))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "kiln.hcl"), fmt.Sprintf(`
image "app" {
  from     = "docker://%s"
  platform = "linux/amd64"
  file "/etc/motd" { content = "hi\n" }
}`, tag))
	first := mustBake(t, dir, testEpoch)
	step := "app/from docker://" + tag
	if st := first.stepStates()[step]; st != StateBuilt {
		t.Errorf("first bake: %s %s, want built", step, st)
	}
	again := mustBake(t, dir, testEpoch)
	if st := again.stepStates()[step]; st != StateCached {
		t.Errorf("re-bake: %s %s, want cached", step, st)
	}
	if again.result("app").Digest != first.result("app").Digest {
		t.Errorf("re-bake gave another image")
	}

	// The tag now names another image: the bake follows it.
	other := testBase(t, map[string]string{"etc/other": "x"})
	dockerLoad(t, other, tag)
	moved := mustBake(t, dir, testEpoch)
	if moved.result("app").Digest == first.result("app").Digest {
		t.Error("a moved tag baked the old image")
	}
	exec.Command("docker", "rmi", "-f", tag).Run()
	_, err := bake(t, dir, testEpoch, nil)
	if err == nil || !strings.Contains(err.Error(), "docker pull "+tag) {
		t.Errorf("an image the engine lacks: %v, want it to say `docker pull %s`", err, tag)
	}
}

func TestUnknownBasesAreRefused(t *testing.T) {
	for _, c := range []struct{ name, content, want string }{
		{"notes.txt", "just some text, long enough to tell\n", "is not a tar archive (it holds text/plain"},
		{"app.zip", "PK\x03\x04" + strings.Repeat("\x00", 600), "is not a tar archive (it holds application/zip)"},
		{"empty.tar", string(tarOf(t, nil)), "is an empty tar archive"},
		{"old.tar", string(tarOf(t, map[string]string{"repositories": "{}", "abc/layer.tar": ""})), "without manifest.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, c.name), c.content)
			writeFile(t, filepath.Join(dir, "kiln.hcl"), fmt.Sprintf("image \"a\" {\n  from = \"./%s\"\n}\n", c.name))
			_, err := bake(t, dir, testEpoch, nil)
			var se *StepError
			if !errors.As(err, &se) || se.Step != "from" || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a from error saying %q", err, c.want)
			}
		})
	}
}

// A docker save archive that was gzipped is still an image.
func TestGzippedDockerArchive(t *testing.T) {
	dir := t.TempDir()
	tag, _ := name.NewTag("kiln.test/saved:1")
	var buf bytes.Buffer
	if err := tarball.Write(tag, testBase(t, baseFiles), &buf); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(buf.Bytes())
	zw.Close()
	writeFile(t, filepath.Join(dir, "app.tar.gz"), gz.String())
	writeFile(t, filepath.Join(dir, "kiln.hcl"), "image \"a\" {\n  from = \"./app.tar.gz\"\n  platform = \"linux/amd64\"\n}\n")
	r := mustBake(t, dir, testEpoch)
	if files := layerFiles(t, r.result("a")); files["etc/os-release"] == nil || files["manifest.json"] != nil {
		t.Errorf("image holds %v", keys(files))
	}
}
