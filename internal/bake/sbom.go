package bake

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/package-url/packageurl-go"

	"github.com/kiln-build/kiln/internal/debian"
	"github.com/kiln-build/kiln/internal/spec"
)

// SBOMMediaType is the media type of the SBOMs kiln stores beside images.
const SBOMMediaType = "application/vnd.cyclonedx+json"

// sbomSpecVersion is the CycloneDX version kiln writes.
const sbomSpecVersion = cdx.SpecVersion1_6

// sbomInput is what an image's SBOM describes.
type sbomInput struct {
	Name   string
	Digest v1.Hash
	Epoch  time.Time
	Base   base        // its img is not read
	OS     osInventory // what the base's filesystem says of its OS
	Steps  []*built
	// Revision and SourceURL are the source the image was baked from (see
	// SourceInfo.RevisionFor); "" when unknown.
	Revision, SourceURL string
}

// buildSBOM renders a CycloneDX 1.6 JSON document of an image: the image itself, its
// base (by digest) with the OS packages its filesystem lists, every Go binary with the
// modules compiled into it, and every file the steps added with its SHA-256. It is a function of its input alone, so it is reproducible.
func buildSBOM(in sbomInput) ([]byte, error) {
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuidFrom(in.Digest.String())
	imageRef := "image:" + in.Name
	bom.Metadata = &cdx.Metadata{
		Timestamp: in.Epoch.UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: "kiln",
		}}},
		Component: &cdx.Component{
			BOMRef:     imageRef,
			Type:       cdx.ComponentTypeContainer,
			Name:       in.Name,
			Version:    in.Digest.String(),
			PackageURL: packageurl.NewPackageURL("oci", "", in.Name, in.Digest.String(), nil, "").ToString(),
		},
	}
	if in.Revision != "" {
		bom.Metadata.Component.Properties = &[]cdx.Property{{Name: "kiln:source:revision", Value: in.Revision}}
	}
	if in.SourceURL != "" {
		bom.Metadata.Component.ExternalReferences = &[]cdx.ExternalReference{{Type: cdx.ERTypeVCS, URL: in.SourceURL}}
	}
	var comps []cdx.Component
	deps := []string{}
	var dependencies []cdx.Dependency
	if c := baseComponent(in.Base); c != nil {
		comps = append(comps, *c)
		deps = append(deps, c.BOMRef)
		var pkgRefs []string
		for _, p := range in.OS.Packages {
			pc := packageComponent(in.OS, p)
			comps = append(comps, pc)
			pkgRefs = append(pkgRefs, pc.BOMRef)
		}
		dependencies = append(dependencies, cdx.Dependency{Ref: c.BOMRef, Dependencies: &pkgRefs})
	}
	for _, st := range in.Steps {
		if g := st.Go; g != nil {
			appRef := "go:" + g.ImportPath
			app := cdx.Component{
				BOMRef:     appRef,
				Type:       cdx.ComponentTypeApplication,
				Name:       g.ImportPath,
				Version:    g.Main.Version,
				PackageURL: "pkg:golang/" + g.ImportPath,
				Properties: &[]cdx.Property{
					{Name: "kiln:go:version", Value: g.GoVersion},
					{Name: "kiln:path", Value: g.Binary},
				},
			}
			comps = append(comps, app)
			deps = append(deps, appRef)
			var modRefs []string
			for _, m := range g.Modules {
				ref := "pkg:golang/" + m.Path + "@" + m.Version
				c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeLibrary, Name: m.Path, Version: m.Version, PackageURL: ref}
				if m.Sum != "" {
					c.Properties = &[]cdx.Property{{Name: "kiln:go:sum", Value: m.Sum}}
				}
				comps = append(comps, c)
				modRefs = append(modRefs, ref)
			}
			dependencies = append(dependencies, cdx.Dependency{Ref: appRef, Dependencies: &modRefs})
		}
		if d := st.Debian; d != nil {
			for _, p := range d.Packages {
				c := debComponent(d.Suite, p)
				comps = append(comps, c)
				deps = append(deps, c.BOMRef)
			}
		}
		for _, f := range st.Files {
			ref := "file:" + f.Path
			comps = append(comps, cdx.Component{
				BOMRef: ref,
				Type:   cdx.ComponentTypeFile,
				Name:   f.Path,
				Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: f.SHA256}},
			})
			deps = append(deps, ref)
		}
	}
	seen := map[string]bool{} // two binaries may share modules; a bom-ref must be unique
	comps = slices.DeleteFunc(comps, func(c cdx.Component) bool {
		dup := seen[c.BOMRef]
		seen[c.BOMRef] = true
		return dup
	})
	bom.Components = &comps
	dependencies = append([]cdx.Dependency{{Ref: imageRef, Dependencies: &deps}}, dependencies...)
	bom.Dependencies = &dependencies
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	enc.SetEscapeHTML(false) // purls hold "&"
	// EncodeVersion sets $schema to the schema of the version written.
	if err := enc.EncodeVersion(bom, sbomSpecVersion); err != nil {
		return nil, fmt.Errorf("encoding SBOM: %w", err)
	}
	return buf.Bytes(), nil
}

// uuidFrom derives a version-5-style UUID from s, so the SBOM's serial number is stable.
func uuidFrom(s string) string {
	h := sha256.Sum256([]byte(s))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	x := fmt.Sprintf("%x", h[:16])
	return strings.Join([]string{x[0:8], x[8:12], x[12:16], x[16:20], x[20:32]}, "-")
}

// baseComponent describes an image's base: by its reference or path as the spec wrote
// it, its manifest digest and, for a file, the file's SHA-256. nil for scratch.
func baseComponent(bs base) *cdx.Component {
	if bs.kind == spec.FromScratch || bs.kind == "" {
		return nil
	}
	c := &cdx.Component{Type: cdx.ComponentTypeContainer, Name: bs.name}
	props := []cdx.Property{{Name: "kiln:base:kind", Value: string(bs.kind)}}
	if bs.format != "" {
		props = append(props, cdx.Property{Name: "kiln:base:format", Value: string(bs.format)})
	}
	if bs.file != "" {
		c.Hashes = &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: bs.file}}
	}
	if bs.digest != (v1.Hash{}) {
		c.Version = bs.digest.String()
		c.PackageURL = ociPURL(bs)
	}
	if bs.format == fileRootfs {
		c.Type = cdx.ComponentTypeFile
	}
	if d := bs.docker; d != nil {
		props = append(props, cdx.Property{Name: "kiln:docker:image-id", Value: d.ID.String()})
		for _, rd := range slices.Sorted(slices.Values(d.RepoDigests)) {
			props = append(props, cdx.Property{Name: "kiln:docker:repo-digest", Value: rd})
		}
	}
	c.Properties = &props
	switch {
	case c.Name == "" && bs.digest != (v1.Hash{}):
		c.Name = bs.digest.String()
	case c.Name == "":
		c.Name = "sha256:" + bs.file
	}
	c.BOMRef = "base:" + c.Name
	return c
}

// ociPURL is the package URL of an image base: pkg:oci/NAME@DIGEST, with the repository
// it comes from for a reference. A docker:// base pulled from a registry is named by the
// registry's manifest digest, which is what `docker pull NAME@DIGEST` takes.
func ociPURL(bs base) string {
	purlName, digest := "", bs.digest.String()
	var quals packageurl.Qualifiers
	switch bs.kind {
	case spec.FromRegistry, spec.FromDocker:
		ref := bs.name
		if d := bs.docker; d != nil && len(d.RepoDigests) > 0 {
			ref = slices.Min(d.RepoDigests)
		}
		if r, err := name.ParseReference(ref); err == nil {
			repo := r.Context()
			purlName = path.Base(repo.RepositoryStr())
			quals = append(quals, packageurl.Qualifier{Key: "repository_url", Value: repo.RegistryStr() + "/" + repo.RepositoryStr()})
			if t, ok := r.(name.Tag); ok && !strings.Contains(bs.name, "@") {
				quals = append(quals, packageurl.Qualifier{Key: "tag", Value: t.TagStr()})
			}
			if d, ok := r.(name.Digest); ok {
				digest = d.DigestStr()
			}
		}
	default:
		purlName = strings.TrimSuffix(path.Base(bs.name), path.Ext(bs.name))
	}
	if purlName == "" || purlName == "." || purlName == "/" {
		purlName = "base"
	}
	return packageurl.NewPackageURL("oci", "", purlName, digest, quals, "").ToString()
}

// packageComponent is an OS package of a base, named by its purl
// (pkg:deb/debian/NAME@VERSION?arch=...&distro=debian-12, pkg:apk/alpine/...).
func packageComponent(inv osInventory, p osPackage) cdx.Component {
	ns := inv.Distro
	if ns == "" {
		ns = map[string]string{"deb": "debian", "apk": "alpine"}[p.Type]
	}
	var quals packageurl.Qualifiers
	if p.Arch != "" {
		quals = append(quals, packageurl.Qualifier{Key: "arch", Value: p.Arch})
	}
	if inv.Distro != "" && inv.VersionID != "" {
		quals = append(quals, packageurl.Qualifier{Key: "distro", Value: inv.Distro + "-" + inv.VersionID})
	}
	purl := packageurl.NewPackageURL(p.Type, ns, p.Name, p.Version, quals, "").ToString()
	c := cdx.Component{BOMRef: purl, Type: cdx.ComponentTypeLibrary, Name: p.Name, Version: p.Version, PackageURL: purl}
	if p.Source != "" {
		c.Properties = &[]cdx.Property{{Name: "kiln:" + p.Type + ":source", Value: p.Source}}
	}
	return c
}

// debComponent is a package a debian step installed:
// pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=SUITE.
func debComponent(suite string, p debian.Installed) cdx.Component {
	quals := packageurl.Qualifiers{{Key: "arch", Value: p.Arch}}
	if suite != "" {
		quals = append(quals, packageurl.Qualifier{Key: "distro", Value: suite})
	}
	purl := packageurl.NewPackageURL("deb", "debian", p.Name, p.Version, quals, "").ToString()
	c := cdx.Component{BOMRef: purl, Type: cdx.ComponentTypeLibrary, Name: p.Name, Version: p.Version, PackageURL: purl}
	if p.Source != "" {
		c.Properties = &[]cdx.Property{{Name: "kiln:deb:source", Value: p.Source}}
	}
	return c
}
