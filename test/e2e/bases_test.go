package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"
)

// debianFiles is the filesystem of the bases: a very small Debian.
var debianFiles = map[string]string{
	"etc/os-release":      "ID=debian\nVERSION_ID=\"12\"\n",
	"var/lib/dpkg/status": "Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0+deb12u1\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u7\n",
}

func tarBytes(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range []string{"etc/os-release", "var/lib/dpkg/status"} {
		tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(files[p])), Typeflag: tar.TypeReg})
		io.WriteString(tw, files[p])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// debianImage is a linux/amd64 image of debianFiles.
func debianImage(t *testing.T) v1.Image {
	t.Helper()
	raw := tarBytes(t, debianFiles)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dockerLoad loads img into the Docker engine as tag through the engine's API, and
// removes it when the test ends.
func dockerLoad(t *testing.T, img v1.Image, tag string) {
	t.Helper()
	ctx := context.Background()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(tag)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(ref, img, pw)) }()
	resp, err := cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	sc := bufio.NewScanner(resp)
	for sc.Scan() {
		var msg struct{ Error string }
		if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.Error != "" {
			t.Fatalf("loading %s: %s", tag, msg.Error)
		}
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
}

// TestEveryBaseBakesTheSameFromTwoClones bakes an image on each kind of base from two
// copies of a project in unrelated directories: the digests and the SBOMs agree, the
// store validates, and neither directory appears in the images or their SBOMs.
func TestEveryBaseBakesTheSameFromTwoClones(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img := debianImage(t)
	regRef := strings.TrimPrefix(srv.URL, "http://") + "/bases/debian:12"
	r, _ := name.ParseReference(regRef)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	dockerTag := fmt.Sprintf("kiln-e2e/debian:%d", time.Now().UnixNano())
	dockerLoad(t, img, dockerTag)

	a := filepath.Join(t.TempDir(), "project")
	bases := filepath.Join(a, "bases")
	lp, err := layout.Write(filepath.Join(bases, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bases, "rootfs.tar"), tarBytes(t, debianFiles), 0o644)
	tag, _ := name.NewTag("example.com/app:1")
	if err := tarball.WriteToFile(filepath.Join(bases, "app.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	sh(t, bases, nil, "tar", "-C", "layout", "-cf", "oci.tar", ".")

	kinds := map[string]string{
		"scratch":  `"scratch"`,
		"child":    `image.scratch`,
		"layout":   `"./bases/layout"`,
		"rootfs":   `"./bases/rootfs.tar"`,
		"saved":    `"./bases/app.tar"`,
		"oci":      `"./bases/oci.tar"`,
		"registry": fmt.Sprintf("%q", regRef),
		"docker":   fmt.Sprintf("%q", "docker://"+dockerTag),
	}
	var hcl strings.Builder
	for _, n := range []string{"scratch", "child", "layout", "rootfs", "saved", "oci", "registry", "docker"} {
		fmt.Fprintf(&hcl, "image %q {\n  from     = %s\n  platform = \"linux/amd64\"\n  file \"/etc/motd\" { content = \"%s\\n\" }\n}\n", n, kinds[n], n)
	}
	os.WriteFile(filepath.Join(a, "kiln.hcl"), []byte(hcl.String()), 0o644)

	b := filepath.Join(t.TempDir(), "elsewhere", "deeper", "copy")
	os.MkdirAll(filepath.Dir(b), 0o755)
	sh(t, "/", nil, "cp", "-r", a, b)

	outA := ok(t, a, []string{epoch}, "bake").stdout
	time.Sleep(1100 * time.Millisecond) // the wall clock moves on; nothing baked may
	outB := ok(t, b, []string{epoch}, "bake").stdout
	paths := []string{a, b, filepath.Dir(a), filepath.Dir(b)}
	for n := range kinds {
		da, db := digestOf(t, outA, n), digestOf(t, outB, n)
		if da != db {
			t.Errorf("image %s: %s in %s, %s in %s", n, da, a, db, b)
		}
		sa, sb := ok(t, a, nil, "sbom", n).stdout, ok(t, b, nil, "sbom", n).stdout
		if sa != sb {
			t.Errorf("image %s: the SBOMs differ", n)
		}
		for _, p := range paths {
			if strings.Contains(sa, p) || strings.Contains(sb, p) {
				t.Errorf("image %s: the SBOM holds the path %s", n, p)
			}
		}
	}
	for _, dir := range []string{a, b} {
		store := filepath.Join(dir, ".kiln", "images")
		checkStore(t, store)
		l, err := layout.FromPath(store)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := l.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range m.Manifests {
			img, err := l.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cfg, _ := img.RawConfigFile()
			man, _ := img.RawManifest()
			for _, p := range paths {
				if bytes.Contains(cfg, []byte(p)) || bytes.Contains(man, []byte(p)) {
					t.Errorf("image %s holds the path %s:\n%s\n%s", d.Digest, p, cfg, man)
				}
			}
		}
	}
}

// TestDockerBaseErrors: a docker:// base the engine lacks says how to get it; an
// engine that cannot be reached says so; a file that is no base says what it is.
func TestDockerBaseErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte("image \"a\" {\n  from = \"docker://kiln-e2e/absent:1\"\n}\n"), 0o644)
	fails(t, dir, nil, 1, []string{"docker pull kiln-e2e/absent:1"}, "bake")
	fails(t, dir, []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, 1,
		[]string{"cannot reach the Docker engine at unix:///nonexistent/docker.sock", "is it running?"}, "bake")

	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("a text file, not an image, long enough to sniff\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte("image \"a\" {\n  from = \"./notes.txt\"\n}\n"), 0o644)
	fails(t, dir, nil, 1, []string{"on kiln.hcl line 2", "is not a tar archive (it holds text/plain"}, "bake")
}
