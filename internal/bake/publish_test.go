package bake

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/imagestore"
)

// startRegistry runs go-containerregistry's registry, which speaks the real distribution
// protocol, on a loopback port.
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestPushPullRoundTrip(t *testing.T) {
	reg := startRegistry(t)
	dir := example(t)
	res := mustBake(t, dir, testEpoch).result("hello")

	ref, err := Push(context.Background(), res.Image, reg+"/team", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if want := reg + "/team/hello@" + res.Digest.String(); ref.String() != want {
		t.Errorf("pushed to %s, want %s", ref, want)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pulled.Digest(); d != res.Digest {
		t.Fatalf("pulled %s, baked %s", d, res.Digest)
	}
	if err := validate.Image(pulled); err != nil { // reads and checks every layer
		t.Fatalf("pulled image is not valid: %v", err)
	}

	// The pushed image works as a base by digest, and then needs no network.
	writeFile(t, filepath.Join(dir, "child", "kiln.hcl"), `
image "child" {
  from = "`+ref.String()+`"
  file "/etc/child" {
    content = "child"
  }
}
`)
	child := mustBake(t, filepath.Join(dir, "child"), testEpoch).result("child")
	m, _ := child.Image.Manifest()
	if m.Annotations[AnnotationBaseDigest] != res.Digest.String() || m.Annotations[AnnotationBaseName] != ref.String() {
		t.Errorf("base annotations %v", m.Annotations)
	}
	if n, _ := child.Image.Layers(); len(n) != 4 {
		t.Errorf("child has %d layers, want the base's 3 and its own", len(n))
	}
}

func TestPushToUnreachableRegistry(t *testing.T) {
	img, _ := random.Image(64, 1)
	_, err := Push(context.Background(), img, "127.0.0.1:1/team", "hello")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the registry at 127.0.0.1:1") {
		t.Fatalf("got %v, want an error naming the unreachable registry", err)
	}
}

func TestBases(t *testing.T) {
	dir := t.TempDir()
	// An OCI layout with one image.
	baseImg, _ := random.Image(128, 2)
	lp, err := layout.Write(filepath.Join(dir, "base-layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(baseImg); err != nil {
		t.Fatal(err)
	}
	baseDigest, _ := baseImg.Digest()
	// A rootfs tarball.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc/os-release", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("kiln\n"))
	tw.Close()
	writeFile(t, filepath.Join(dir, "rootfs.tar"), buf.String())

	writeFile(t, filepath.Join(dir, "kiln.hcl"), `
image "from-layout" {
  from = "./base-layout"
  file "/a" {
    content = "a"
  }
}
image "from-rootfs" {
  from = "./rootfs.tar"
  file "/b" {
    content = "b"
  }
}
image "from-image" {
  from = image.from-rootfs
  cmd  = ["/bin/true"]
  file "/c" {
    content = "c"
  }
}
`)
	run := mustBake(t, dir, testEpoch)
	for _, r := range run.results {
		if err := validate.Image(r.Image); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
	layers := func(n string) int { l, _ := run.result(n).Image.Layers(); return len(l) }
	if layers("from-layout") != 3 || layers("from-rootfs") != 2 || layers("from-image") != 3 {
		t.Errorf("layers: layout %d, rootfs %d, image %d", layers("from-layout"), layers("from-rootfs"), layers("from-image"))
	}
	m, _ := run.result("from-layout").Image.Manifest()
	if m.Annotations[AnnotationBaseDigest] != baseDigest.String() {
		t.Errorf("layout base digest %q, want %s", m.Annotations[AnnotationBaseDigest], baseDigest)
	}
	m, _ = run.result("from-image").Image.Manifest()
	if m.Annotations[AnnotationBaseDigest] != run.result("from-rootfs").Digest.String() {
		t.Errorf("image base digest %q", m.Annotations[AnnotationBaseDigest])
	}
}

func TestEmbeddedFilesAreGoInputs(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module example.com/embedder\n\ngo 1.22\n")
	writeFile(t, filepath.Join(dir, "main.go"), "package main\n\nimport _ \"embed\"\n\n//go:embed msg.txt\nvar msg string\n\nfunc main() { println(msg) }\n")
	writeFile(t, filepath.Join(dir, "msg.txt"), "one")
	writeFile(t, filepath.Join(dir, "README.md"), "docs")
	writeFile(t, filepath.Join(dir, "kiln.hcl"), "image \"e\" {\n  from = \"scratch\"\n  go {\n    package = \".\"\n  }\n}\n")
	first := mustBake(t, dir, testEpoch).result("e").Digest
	writeFile(t, filepath.Join(dir, "README.md"), "more docs")
	if states := mustBake(t, dir, testEpoch).stepStates(); states["e/go build ."] != StateCached {
		t.Errorf("editing a README rebuilt the binary: %v", states)
	}
	writeFile(t, filepath.Join(dir, "msg.txt"), "two")
	run := mustBake(t, dir, testEpoch)
	if run.stepStates()["e/go build ."] != StateBuilt || run.result("e").Digest == first {
		t.Errorf("editing an embedded file did not rebuild the binary: %v", run.stepStates())
	}
}

func TestSBOM(t *testing.T) {
	dir := example(t)
	res := mustBake(t, dir, testEpoch).result("hello")
	store, _ := imagestore.Open(filepath.Join(dir, ".kiln"))
	e, err := store.Find("hello")
	if err != nil {
		t.Fatal(err)
	}
	if e.SBOM != res.SBOM || e.SBOM == (v1.Hash{}) {
		t.Fatalf("index SBOM %s, result %s", e.SBOM, res.SBOM)
	}
	raw := readBlob(t, store, e.SBOM)
	var bom struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component struct{ Name, Version string }
		}
		Components []struct {
			Type, Name, Purl string
			Hashes           []struct{ Alg, Content string }
		}
	}
	if err := json.Unmarshal(raw, &bom); err != nil {
		t.Fatal(err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Version != res.Digest.String() {
		t.Fatalf("SBOM header %+v", bom)
	}
	found := map[string]bool{}
	for _, c := range bom.Components {
		found[c.Type+" "+c.Name] = true
		if c.Type == "file" && (len(c.Hashes) != 1 || len(c.Hashes[0].Content) != 64) {
			t.Errorf("file %s has no SHA-256", c.Name)
		}
	}
	for _, want := range []string{"application example.com/hello", "file /app/hello", "file /srv/static/index.html", "file /etc/hello/greeting.txt"} {
		if !found[want] {
			t.Errorf("SBOM lacks %q; has %v", want, found)
		}
	}
	// Same image, same SBOM: it is reproducible too.
	again := mustBake(t, example(t), testEpoch).result("hello")
	if again.SBOM != res.SBOM {
		t.Errorf("SBOM differs between identical bakes: %s vs %s", again.SBOM, res.SBOM)
	}
}
