package bake

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SBOMMediaType is the media type of the SBOMs kiln stores beside images.
const SBOMMediaType = "application/vnd.cyclonedx+json"

// sbomInput is what an image's SBOM describes.
type sbomInput struct {
	Name     string
	Digest   v1.Hash
	Epoch    time.Time
	Base     string  // base reference, "" for scratch
	BaseHash v1.Hash // zero for scratch
	Steps    []*built
	// Revision and SourceURL are the source the image was baked from (see
	// SourceInfo.RevisionFor); "" when unknown.
	Revision, SourceURL string
}

// buildSBOM renders a CycloneDX 1.6 JSON document of an image: the image itself, its
// base, every Go binary with the modules compiled into it, and every file the steps
// added with its SHA-256. It is a function of its input alone, so it is reproducible.
func buildSBOM(in sbomInput) ([]byte, error) {
	bom := cdx.NewBOM()
	bom.SpecVersion = cdx.SpecVersion1_6
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
			PackageURL: fmt.Sprintf("pkg:oci/%s@%s", url.PathEscape(in.Name), url.QueryEscape(in.Digest.String())),
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
	if in.Base != "" {
		ref := "base:" + in.Base
		c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeContainer, Name: in.Base}
		if in.BaseHash != (v1.Hash{}) {
			c.Version = in.BaseHash.String()
		}
		comps = append(comps, c)
		deps = append(deps, ref)
	}
	var dependencies []cdx.Dependency
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
	if err := enc.Encode(bom); err != nil {
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
