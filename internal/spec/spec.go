package spec

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Config is a decoded, fully evaluated spec. Values are plain Go types: nothing in it
// needs HCL to be understood, but each part keeps the source range it came from so later
// stages can report problems at the right place.
type Config struct {
	// Dir is the directory relative paths in the spec resolve against: the spec file's.
	Dir string
	// Filename is the spec file as it was named to Load.
	Filename string
	// Files holds the parsed sources, for rendering diagnostics with snippets.
	Files map[string]*hcl.File
	// Variables maps each declared variable to its final value, rendered as a string.
	Variables map[string]string
	// Images and Services are in declaration order.
	Images    []*Image
	Services  []*Service
	Pipelines []*Pipeline
	Secrets   []*Secret
	// Runtime is the runtime block, nil when there is none (see RuntimeName).
	Runtime *Runtime
	// Sensitive names the variables declared sensitive (or made so by
	// Options.Sensitive): their values are secrets.
	Sensitive []string
}

// Service returns the service named name, or nil.
func (c *Config) Service(name string) *Service {
	for _, s := range c.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Image returns the image named name, or nil.
func (c *Config) Image(name string) *Image {
	for _, img := range c.Images {
		if img.Name == name {
			return img
		}
	}
	return nil
}

// Image is one `image` block: a base, the steps that add layers to it, and the
// configuration of the servers started from it.
type Image struct {
	Name       string
	From       From
	Platform   Platform
	Steps      []Step // in the order they appear; each becomes one layer
	Env        map[string]string
	Entrypoint []string // nil means "not set": the go binary if there is one, else the base's
	Cmd        []string
	Workdir    string
	User       string
	Labels     map[string]string
	Expose     []string // "8080/tcp"
	DeclRange  hcl.Range
}

// FromKind says where an image's base comes from.
type FromKind string

const (
	FromScratch  FromKind = "scratch"  // no base: an empty filesystem
	FromImage    FromKind = "image"    // another image block of the same spec
	FromLayout   FromKind = "layout"   // a local OCI image layout directory
	FromTarball  FromKind = "tarball"  // a rootfs tarball or an image archive (docker save, an OCI layout in a tar)
	FromRegistry FromKind = "registry" // a registry reference, resolved to a digest at bake time
	// FromDocker is an image of the local Docker engine, written docker://REF: REF is an
	// image reference (python:3.12-slim) or an image ID (sha256:...), resolved to the
	// image's ID when baked. Ref holds REF, without the scheme.
	FromDocker FromKind = "docker"
)

// From is an image's base.
type From struct {
	Kind FromKind
	// Ref is the image block's name, the absolute path of a layout or tarball, or the
	// registry reference as written.
	Ref   string
	Range hcl.Range
}

// Platform is an OS and architecture (with an optional variant) such as linux/arm64.
type Platform struct {
	OS, Arch, Variant string
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Step is one layer-producing step of an image: *Debian, *GoBuild, *Copy or *File.
type Step interface {
	// Describe is a one-line human description, e.g. "go build ./cmd/web".
	Describe() string
	// Where is the block the step was declared in.
	Where() hcl.Range
}

// Owner is a numeric uid:gid pair. Names are not accepted: an image from scratch has no
// /etc/passwd to resolve them against.
type Owner struct{ UID, GID int }

// GoBuild builds a Go main package into a static binary, like ko: -trimpath, CGO off
// unless asked, for the image's platform.
type GoBuild struct {
	Package string   // as written, relative to Dir
	Dir     string   // absolute directory the build runs in (the spec's, or `dir`)
	Ldflags []string // joined with spaces into -ldflags
	Tags    []string
	CGO     bool
	Env     map[string]string // extra build environment, e.g. GOEXPERIMENT
	To      string            // path of the binary in the image; default /app/<package base>
	Range   hcl.Range
}

func (g *GoBuild) Describe() string { return "go build " + g.Package }
func (g *GoBuild) Where() hcl.Range { return g.Range }

// Copy copies a file or directory tree from the build context into the image.
type Copy struct {
	Source  string  // as written
	Path    string  // absolute path on disk
	To      string  // absolute path in the image
	Mode    *uint32 // nil: 0644 for files, 0755 for executables and directories
	Owner   Owner
	Exclude []string // path.Match patterns, relative to Source
	Range   hcl.Range
}

func (c *Copy) Describe() string { return "copy " + c.Source + " -> " + c.To }
func (c *Copy) Where() hcl.Range { return c.Range }

// File writes inline content to a path in the image.
type File struct {
	Path    string
	Content string
	Mode    uint32
	Owner   Owner
	Range   hcl.Range
}

func (f *File) Describe() string { return "file " + f.Path }
func (f *File) Where() hcl.Range { return f.Range }

// Debian installs Debian packages and their dependencies from a signed repository,
// running no maintainer script (a `packages { debian { ... } }` block). Its layer is
// the image's first, below every other step's.
type Debian struct {
	Suite    string   // bookworm...
	Packages []string // as written: names, or NAME=VERSION
	// Repository is the archive's root URI; "" for the machine's apt sources of the
	// suite (with its -updates and -security suites).
	Repository string
	Docs       bool // keep man pages and documentation (copyright files are always kept)
	Range      hcl.Range
}

func (d *Debian) Describe() string {
	return "debian " + d.Suite + ": " + strings.Join(d.Packages, " ")
}
func (d *Debian) Where() hcl.Range { return d.Range }
