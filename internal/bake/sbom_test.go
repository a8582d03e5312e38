package bake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// cycloneDXSchema compiles the official CycloneDX 1.6 JSON schema in testdata.
func cycloneDXSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, f := range []string{"bom-1.6.schema.json", "spdx.schema.json", "jsf-0.82.schema.json"} {
		r, err := os.Open(filepath.Join("testdata", "cyclonedx", f))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("http://cyclonedx.org/schema/"+f, doc); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Compile("http://cyclonedx.org/schema/bom-1.6.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type sbomDoc struct {
	Schema      string `json:"$schema"`
	SpecVersion string `json:"specVersion"`
	Components  []struct {
		BOMRef  string `json:"bom-ref"`
		Type    string `json:"type"`
		Name    string `json:"name"`
		Version string `json:"version"`
		PURL    string `json:"purl"`
		Hashes  []struct{ Content string }
	} `json:"components"`
}

// TestSBOMs bakes an image on every kind of base and checks each SBOM against the
// CycloneDX schema, its base named with its digest, and the OS packages of the base.
func TestSBOMs(t *testing.T) {
	schema := cycloneDXSchema(t)
	reg := startRegistry(t)
	ref := reg + "/bases/debian:12"
	pushImage(t, ref, testBase(t, baseFiles))
	docker := loadIntoDocker(t, testBase(t, baseFiles))
	dir := filepath.Join(t.TempDir(), "project")
	copyTree(t, "../../examples/hello", dir) // a Go module for the go step
	basesProject(t, dir, ref, fmt.Sprintf(`
image "docker" {
  from     = "docker://%s"
  platform = "linux/amd64"
}
image "alpine" {
  from = "./bases/alpine.tar"
}
image "hello" {
  from = "./bases/rootfs.tar"
  go { package = "." }
}`, docker))
	writeFile(t, filepath.Join(dir, "bases", "alpine.tar"), string(tarOf(t, map[string]string{
		"etc/os-release": "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n",
		"lib/apk/db/installed": "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n\n" +
			"P:busybox-binsh\nV:1.36.1-r29\nA:x86_64\no:busybox\n",
	})))

	run := mustBake(t, dir, testEpoch)
	deb := []string{
		"pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
		"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12",
	}
	want := map[string][]string{
		"scratch":    nil,
		"child":      {"pkg:oci/scratch@sha256:"},
		"layout":     append([]string{"pkg:oci/layout@sha256:"}, deb...),
		"rootfs":     deb,
		"registry":   append([]string{"pkg:oci/debian@sha256:", "repository_url=127.0.0.1", "tag=12"}, deb...),
		"archive":    append([]string{"pkg:oci/saved@sha256:"}, deb...),
		"ociarchive": append([]string{"pkg:oci/oci@sha256:"}, deb...),
		"docker":     append([]string{"pkg:oci/base@sha256:", "kiln:docker:image-id"}, deb...),
		"alpine":     {"pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3", "pkg:apk/alpine/busybox-binsh@1.36.1-r29?arch=x86_64&distro=alpine-3.20.3"},
		"hello":      append([]string{"pkg:golang/"}, deb...),
	}
	for n, wants := range want {
		r := run.result(n)
		if r == nil {
			t.Errorf("no image %s", n)
			continue
		}
		if err := validate.Image(r.Image); err != nil {
			t.Errorf("image %s: %v", n, err)
		}
		raw := readBlob(t, run.store, r.SBOM)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(doc); err != nil {
			t.Errorf("image %s: the SBOM is not valid CycloneDX 1.6: %v", n, err)
		}
		var d sbomDoc
		json.Unmarshal(raw, &d)
		if d.SpecVersion != "1.6" || d.Schema != "http://cyclonedx.org/schema/bom-1.6.schema.json" {
			t.Errorf("image %s: specVersion %s with $schema %s", n, d.SpecVersion, d.Schema)
		}
		for _, w := range wants {
			if !bytes.Contains(raw, []byte(w)) {
				t.Errorf("image %s: the SBOM lacks %q", n, w)
			}
		}
		if bytes.Contains(raw, []byte("pkg:deb/debian/removed")) {
			t.Errorf("image %s: a package dpkg lists as removed is in the SBOM", n)
		}
	}
	// The rootfs base is named by its path and hash.
	var d sbomDoc
	json.Unmarshal(readBlob(t, run.store, run.result("rootfs").SBOM), &d)
	if c := d.Components[0]; c.Name != "./bases/rootfs.tar" || len(c.Hashes) != 1 || len(c.Hashes[0].Content) != 64 {
		t.Errorf("the rootfs base is %+v", c)
	}
}

func layerOf(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	raw := tarOf(t, files)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestOSInventoryFollowsLayers: a later layer's whiteouts and files decide which
// package database is read; distroless's status.d counts too.
func TestOSInventoryFollowsLayers(t *testing.T) {
	base := layerOf(t, baseFiles)
	names := func(inv osInventory) string {
		var out []string
		for _, p := range inv.Packages {
			out = append(out, p.Type+":"+p.Name)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		what   string
		layers []v1.Layer
		want   string
	}{
		{"one layer", []v1.Layer{base}, "deb:base-files deb:libc6"},
		{"status whited out", []v1.Layer{base, layerOf(t, map[string]string{"var/lib/dpkg/.wh.status": ""})}, ""},
		{"dpkg dir made opaque", []v1.Layer{base, layerOf(t, map[string]string{"var/lib/dpkg/.wh..wh..opq": ""})}, ""},
		{"status replaced", []v1.Layer{base, layerOf(t, map[string]string{"var/lib/dpkg/status": "Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\n"})}, "deb:zlib1g"},
		{"distroless status.d", []v1.Layer{layerOf(t, map[string]string{
			"var/lib/dpkg/status.d/tzdata":         "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
			"var/lib/dpkg/status.d/tzdata.md5sums": "abc  usr/share/zoneinfo/UTC\n",
		})}, "deb:tzdata"},
	} {
		inv, err := scanOS(c.layers)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(inv); got != c.want {
			t.Errorf("%s: packages %q, want %q", c.what, got, c.want)
		}
	}
	inv, _ := scanOS([]v1.Layer{base})
	if inv.Distro != "debian" || inv.VersionID != "12" || inv.Packages[1].Source != "glibc" {
		t.Errorf("inventory %+v", inv)
	}
	// An epoch in a version is percent-encoded in the purl.
	c := packageComponent(osInventory{Distro: "debian", VersionID: "12"}, osPackage{Type: "deb", Name: "zlib1g", Version: "1:1.2.13", Arch: "amd64"})
	if c.PackageURL != "pkg:deb/debian/zlib1g@1:1.2.13?arch=amd64&distro=debian-12" && c.PackageURL != "pkg:deb/debian/zlib1g@1%3A1.2.13?arch=amd64&distro=debian-12" {
		t.Errorf("purl %s", c.PackageURL)
	}
}
