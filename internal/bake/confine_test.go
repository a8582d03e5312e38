package bake

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
)

// commit lays out a pipeline's state as the daemon does: a secret in .kiln, and the
// commit's tree in a directory under .kiln/pipelines. It returns the checkout.
func commit(t *testing.T, hcl string) (checkout, secret string) {
	t.Helper()
	state := filepath.Join(t.TempDir(), "project", ".kiln")
	secret = filepath.Join(state, "token")
	writeFile(t, secret, "s3cret\n")
	checkout = filepath.Join(state, "pipelines", "p", "run-1")
	writeFile(t, filepath.Join(checkout, "kiln.hcl"), hcl)
	writeFile(t, filepath.Join(checkout, "static", "index.html"), "<p>hi</p>\n")
	return checkout, secret
}

func confined(dir string) Options { return Options{Confine: true, Root: dir} }

// wantStepError asserts err is a StepError at line of kiln.hcl whose message says want.
func wantStepError(t *testing.T, err error, line int, want string) {
	t.Helper()
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a StepError", err)
	}
	if se.Range.Start.Line != line || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v at line %d, want %q at line %d", err, se.Range.Start.Line, want, line)
	}
}

func TestConfinedCopyStaysInTheCheckout(t *testing.T) {
	for name, tc := range map[string]struct {
		source string
		setup  func(t *testing.T, checkout, secret string)
	}{
		"absolute path": {source: "SECRET"},
		"dot-dot":       {source: "../../../token"},
		"intermediate symlink": {source: "link/token", setup: func(t *testing.T, checkout, secret string) {
			if err := os.Symlink(filepath.Dir(secret), filepath.Join(checkout, "link")); err != nil {
				t.Fatal(err)
			}
		}},
		"symlink inside a directory": {source: "static/../link/token", setup: func(t *testing.T, checkout, secret string) {
			os.Symlink("../../..", filepath.Join(checkout, "link"))
		}},
	} {
		t.Run(name, func(t *testing.T) {
			checkout, secret := commit(t, "")
			src := strings.ReplaceAll(tc.source, "SECRET", secret)
			writeFile(t, filepath.Join(checkout, "kiln.hcl"), fmt.Sprintf(`image "a" {
  from = "scratch"
  copy %q {
    to = "/x"
  }
}
`, src))
			if tc.setup != nil {
				tc.setup(t, checkout, secret)
			}
			_, err := bakeWith(t, checkout, testEpoch, nil, confined(checkout))
			wantStepError(t, err, 3, "copy "+src)
			// Unconfined, the same spec bakes: a local bake of one's own spec may.
			if _, err := bake(t, checkout, testEpoch, nil); err != nil {
				t.Fatalf("unconfined: %v", err)
			}
		})
	}
}

// A symlink inside the checkout is copied as a symlink, whatever it points at.
func TestConfinedCopyKeepsSymlinks(t *testing.T) {
	checkout, secret := commit(t, `image "a" {
  from = "scratch"
  copy "static" {
    to = "/srv"
  }
}
`)
	if err := os.Symlink(secret, filepath.Join(checkout, "static", "token")); err != nil {
		t.Fatal(err)
	}
	run, err := bakeWith(t, checkout, testEpoch, nil, confined(checkout))
	if err != nil {
		t.Fatal(err)
	}
	files := layerFiles(t, run.result("a"))
	if h := files["srv/token"]; h == nil || h.Linkname != secret {
		t.Fatalf("srv/token: %+v, want a symlink to %s", h, secret)
	}
}

func TestCopyRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tree", "a.txt"), "a\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "tree", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ source, want string }{
		{"tree", "is a named pipe: copy takes regular files, directories and symlinks"},
		{"/dev/zero", "/dev/zero is a character device"},
	} {
		writeFile(t, filepath.Join(dir, "kiln.hcl"), fmt.Sprintf(`image "a" {
  from = "scratch"
  copy %q {
    to = "/x"
  }
}
`, tc.source))
		_, err := bake(t, dir, testEpoch, nil)
		wantStepError(t, err, 3, tc.want)
	}
}

func TestConfinedBasesStayInTheCheckout(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "rootfs.tar"), "")
	writeFile(t, filepath.Join(outside, "layout", "oci-layout"), `{"imageLayoutVersion":"1.0.0"}`)
	writeFile(t, filepath.Join(outside, "layout", "index.json"), `{"schemaVersion":2,"manifests":[]}`)
	for _, from := range []string{filepath.Join(outside, "rootfs.tar"), filepath.Join(outside, "layout")} {
		checkout, _ := commit(t, fmt.Sprintf("image \"a\" {\n  from = %q\n}\n", from))
		_, err := bakeWith(t, checkout, testEpoch, nil, confined(checkout))
		wantStepError(t, err, 2, ErrOutside.Error())
	}
}

func TestConfinedGoStaysInTheCheckout(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "go.mod"), "module example.com/outside\n\ngo 1.24\n")
	writeFile(t, filepath.Join(outside, "lib", "lib.go"), "package lib\n")

	// go.dir outside the checkout.
	checkout, _ := commit(t, fmt.Sprintf("image \"a\" {\n  from = \"scratch\"\n  go {\n    dir     = %q\n    package = \"./lib\"\n  }\n}\n", outside))
	_, err := bakeWith(t, checkout, testEpoch, nil, confined(checkout))
	wantStepError(t, err, 3, ErrOutside.Error())

	// A module of the checkout that replaces a dependency with a directory outside it.
	checkout, _ = commit(t, "image \"a\" {\n  from = \"scratch\"\n  go {\n    package = \".\"\n  }\n}\n")
	writeFile(t, filepath.Join(checkout, "go.mod"), fmt.Sprintf("module example.com/a\n\ngo 1.24\n\nrequire example.com/outside v0.0.0\n\nreplace example.com/outside => %s\n", outside))
	writeFile(t, filepath.Join(checkout, "main.go"), "package main\n\nimport _ \"example.com/outside/lib\"\n\nfunc main() {}\n")
	_, err = bakeWith(t, checkout, testEpoch, nil, confined(checkout))
	wantStepError(t, err, 3, ErrOutside.Error())

	// A package with no go.mod in the checkout does not find one above it.
	checkout = filepath.Join(outside, "checkout")
	writeFile(t, filepath.Join(checkout, "kiln.hcl"), "image \"a\" {\n  from = \"scratch\"\n  go {\n    package = \".\"\n  }\n}\n")
	writeFile(t, filepath.Join(checkout, "main.go"), "package main\n\nfunc main() {}\n")
	_, err = bakeWith(t, checkout, testEpoch, nil, confined(checkout))
	wantStepError(t, err, 3, "no go.mod in")
}

func TestGoEnvIsAllowListed(t *testing.T) {
	for _, tc := range []struct{ block, want string }{
		{`env = { GOFLAGS = "-toolexec=./x.sh" }`, "GOFLAGS may not be set here; a go block's env may set only GO386, GOAMD64"},
		{`env = { GOTOOLCHAIN = "go1.99.0", CC = "./cc" }`, "CC, GOTOOLCHAIN may not be set here"},
		{`env = { CGO_CFLAGS = "-O2" }`, "CGO_CFLAGS may not be set here"},
		{"cgo = true\n    env = { CGO_CFLAGS = \"-fplugin=./evil.so\" }", "-fplugin=./evil.so is not allowed"},
		{`env = { GOARM = "7" }
    ldflags = ["-linkmode=external", "-extld=./x.sh"]`, "-extld=./x.sh is not allowed"},
		{`env = { GOEXPERIMENT = "-toolexec=x" }`, "-toolexec is not allowed"},
	} {
		if tc.want == "" {
			continue
		}
		dir := example(t)
		hcl := string(mustRead(t, filepath.Join(dir, "kiln.hcl")))
		hcl = strings.Replace(hcl, "    ldflags = [\"-s\", \"-w\", \"-X main.version=${var.version}\"]\n", "", 1)
		writeFile(t, filepath.Join(dir, "kiln.hcl"), strings.Replace(hcl, `package = "."`, "package = \".\"\n    "+tc.block, 1))
		_, err := bake(t, dir, testEpoch, nil)
		wantStepError(t, err, 17, tc.want)
	}
	// What the allow-list holds still builds.
	dir := example(t)
	hcl := string(mustRead(t, filepath.Join(dir, "kiln.hcl")))
	writeFile(t, filepath.Join(dir, "kiln.hcl"), strings.Replace(hcl, `package = "."`, "package = \".\"\n    env = { GOAMD64 = \"v2\" }", 1))
	mustBake(t, dir, testEpoch)
}

// The caller's GOFLAGS no longer reach the build (nor its cache key): the digest is the
// same with and without it.
func TestGoBuildIgnoresTheCallersEnvironment(t *testing.T) {
	a, b := example(t), example(t)
	want := mustBake(t, a, testEpoch).result("hello").Digest
	t.Setenv("GOFLAGS", "-toolexec=/bin/false")
	t.Setenv("GOAMD64", "v3")
	if got := mustBake(t, b, testEpoch).result("hello").Digest; got != want {
		t.Fatalf("with the caller's GOFLAGS and GOAMD64: %s, want %s", got, want)
	}
}

// A sandboxed build gives the image an unsandboxed one does, and so does a confined bake.
func TestSandboxedBuildIsReproducible(t *testing.T) {
	want := mustBake(t, example(t), testEpoch).result("hello").Digest
	dir := example(t)
	run, err := bakeWith(t, dir, testEpoch, nil, Options{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := run.result("hello").Digest; got != want {
		t.Errorf("sandboxed: %s, want %s", got, want)
	}
	// Again confined, in the same store (its Go build cache is warm) but built again.
	if err := os.RemoveAll(filepath.Join(dir, ".kiln", "cache", "layers")); err != nil {
		t.Fatal(err)
	}
	run, err = bakeWith(t, dir, testEpoch, nil, confined(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := run.result("hello").Digest; got != want {
		t.Errorf("confined: %s, want %s", got, want)
	}
	if st := run.stepStates()["hello/go build ."]; st != StateBuilt {
		t.Errorf("the confined go step was %s, want built", st)
	}
}

// probeBuild is what the test binary does when a test runs it as the go command (see
// TestMain): what a malicious build would try. It prints what happened and fails.
func probeBuild() int {
	wd, _ := os.Getwd()
	project, _, _ := strings.Cut(wd, "/.kiln/")
	_, err := os.ReadFile(filepath.Join(project, ".kiln", "token"))
	fmt.Printf("token: %v\n", err)
	for _, addr := range [][2]string{{"unix", "/var/run/docker.sock"}, {"tcp", strings.TrimSpace(string(must(os.ReadFile("addr"))))}} {
		c, err := net.Dial(addr[0], addr[1])
		if err == nil {
			c.Close()
		}
		fmt.Printf("%s: %v\n", addr[0], err)
	}
	err = os.WriteFile("planted", nil, 0o644)
	fmt.Printf("write: %v\n", err)
	fmt.Printf("uid: %d\n", os.Getuid())
	return 1
}

func must(b []byte, _ error) []byte { return b }

// TestSandboxedBuildIsIsolated runs a confined bake's go build with the test binary in
// the go command's place, with the mounts and environment a real one gets.
func TestSandboxedBuildIsIsolated(t *testing.T) {
	checkout, secret := commit(t, "")
	writeFile(t, filepath.Join(checkout, "go.mod"), "module example.com/a\n\ngo 1.24\n")
	writeFile(t, filepath.Join(checkout, "main.go"), "package main\n\nfunc main() {}\n")
	writeFile(t, filepath.Join(checkout, "vendor", "modules.txt"), "") // no download: the probe is the go command
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	writeFile(t, filepath.Join(checkout, "addr"), ln.Addr().String())

	// A GOROOT whose go is this test binary.
	exe, _ := os.Executable()
	goroot := t.TempDir()
	writeFile(t, filepath.Join(goroot, "bin", "go"), string(mustRead(t, exe)))
	os.Chmod(filepath.Join(goroot, "bin", "go"), 0o755)

	store, err := imagestore.Open(filepath.Dir(filepath.Dir(filepath.Dir(checkout))))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBaker(store, confined(checkout))
	if err != nil {
		t.Fatal(err)
	}
	h, err := openHostFiles(checkout, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	// cgo, for the mounts a dynamically linked (-race) test binary needs.
	gs, err := newGoStep(&spec.GoBuild{Package: ".", Dir: checkout, CGO: true}, spec.Platform{OS: "linux", Arch: "amd64"}, h)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	out := filepath.Join(work, "out")
	os.Mkdir(out, 0o755)
	var output bytes.Buffer
	err = gs.sandboxed(t.Context(), goTool{Root: goroot, Version: "go1.0"}, b.goSandbox(h), work, out, filepath.Join(out, "bin"), &output)
	if err == nil {
		t.Fatalf("the probe succeeded:\n%s", output.String())
	}
	got := output.String()
	for _, want := range []string{
		"token: open " + secret + ": no such file or directory",
		"unix: dial unix /var/run/docker.sock: connect: no such file or directory",
		"tcp: dial tcp " + ln.Addr().String() + ": connect: network is unreachable",
		"write: open planted: read-only file system",
		"uid: 65532",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the build's probe printed:\n%s\nwant %q", got, want)
		}
	}
}

// layerFiles maps the path of every entry of r's layers to its header.
func layerFiles(t *testing.T, r *Result) map[string]*tar.Header {
	t.Helper()
	files := map[string]*tar.Header{}
	layers, _ := r.Image.Layers()
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			files[h.Name] = h
		}
		rc.Close()
	}
	return files
}

// layoutWith writes an OCI layout whose index.json lists top, with blobs, and returns it.
func layoutWith(t *testing.T, top v1.Descriptor, blobs map[string][]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	writeFile(t, filepath.Join(dir, "oci-layout"), `{"imageLayoutVersion":"1.0.0"}`)
	idx, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{top}})
	writeFile(t, filepath.Join(dir, "index.json"), string(idx))
	for hex, b := range blobs {
		writeFile(t, filepath.Join(dir, "blobs", "sha256", hex), string(b))
	}
	return dir
}

func indexBlob(t *testing.T, child v1.Descriptor) ([]byte, v1.Descriptor) {
	b, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{child}})
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return b, v1.Descriptor{MediaType: types.OCIImageIndex, Digest: h, Size: int64(len(b))}
}

func TestLayoutBaseIsBounded(t *testing.T) {
	bakeFrom := func(layout string) error {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "kiln.hcl"), fmt.Sprintf("image \"a\" {\n  from = %q\n}\n", layout))
		_, err := bake(t, dir, testEpoch, nil)
		return err
	}

	// An index blob that lists itself (possible only if blobs are not checked against
	// their digests): an error, not a recursion until the stack overflows.
	self := v1.Descriptor{MediaType: types.OCIImageIndex, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}}
	b, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{self}})
	self.Size = int64(len(b))
	err := bakeFrom(layoutWith(t, self, map[string][]byte{self.Digest.Hex: b}))
	wantStepError(t, err, 2, "has digest sha256:")

	// Indexes nested deeper than maxIndexDepth, each a valid blob.
	blobs := map[string][]byte{}
	leaf := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}, Size: 2}
	d := leaf
	for range maxIndexDepth + 1 {
		var b []byte
		b, d = indexBlob(t, d)
		blobs[d.Digest.Hex] = b
	}
	err = bakeFrom(layoutWith(t, d, blobs))
	wantStepError(t, err, 2, "indexes nest deeper than 8")

	// A blob larger than its descriptor says.
	big := v1.Descriptor{MediaType: types.OCIImageIndex, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ef", 32)}, Size: 4}
	err = bakeFrom(layoutWith(t, big, map[string][]byte{big.Digest.Hex: []byte("0123456789")}))
	wantStepError(t, err, 2, "larger than its descriptor")

	// A real layout (as crane writes one) is a base.
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "real")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	if err := bakeFrom(dir); err != nil {
		t.Fatal(err)
	}
}
