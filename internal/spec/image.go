package spec

import (
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/hashicorp/hcl/v2"
)

var imageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "from", Required: true},
		{Name: "platform"},
		{Name: "env"},
		{Name: "entrypoint"},
		{Name: "cmd"},
		{Name: "workdir"},
		{Name: "user"},
		{Name: "labels"},
		{Name: "expose"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "go"},
		{Type: "run", LabelNames: []string{"name"}},
		{Type: "copy", LabelNames: []string{"source"}},
		{Type: "file", LabelNames: []string{"path"}},
		{Type: "packages"},
	},
}

var packagesSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "debian"}},
}

var debianSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "suite", Required: true},
		{Name: "packages", Required: true},
		{Name: "repository"},
		{Name: "docs"},
	},
}

var goSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "package", Required: true},
		{Name: "dir"},
		{Name: "ldflags"},
		{Name: "tags"},
		{Name: "cgo"},
		{Name: "env"},
		{Name: "to"},
	},
}

var copySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "to", Required: true},
		{Name: "mode"},
		{Name: "owner"},
		{Name: "exclude"},
	},
}

var fileSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "content", Required: true},
		{Name: "mode"},
		{Name: "owner"},
	},
}

func (d *decoder) image(b *hcl.Block) *Image {
	content, diags := b.Body.Content(imageSchema)
	d.add(diags)
	img := &Image{Name: b.Labels[0], DeclRange: b.DefRange}
	a := content.Attributes

	if attr, ok := a["from"]; ok {
		img.From = d.from(attr)
	}
	img.Platform = d.platform(a)
	img.Env = d.strMap(a, "env")
	for k := range img.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			d.errorf(a["env"].Expr.Range().Ptr(), "Invalid environment variable name", "%q cannot be an environment variable name: it must be non-empty and contain no '=' or whitespace.", k)
		}
	}
	if _, ok := a["entrypoint"]; ok {
		img.Entrypoint = d.strList(a, "entrypoint")
	}
	img.Cmd = d.strList(a, "cmd")
	if s, ok := d.str(a, "workdir"); ok {
		img.Workdir = d.absPath(a["workdir"].Expr.Range(), "workdir", s)
	}
	img.User, _ = d.str(a, "user")
	img.Labels = d.strMap(a, "labels")
	img.Expose = d.expose(a)

	files := map[string]hcl.Range{}
	var packages *hcl.Block
	for _, sb := range content.Blocks {
		switch sb.Type {
		case "packages":
			if packages != nil {
				d.errorf(sb.DefRange.Ptr(), "Duplicate packages block", "An image has one packages block; the first is at %s.", packages.DefRange)
				continue
			}
			packages = sb
			if deb := d.packagesStep(sb); deb != nil {
				// The OS packages are the bottom layer, whatever the block's place.
				img.Steps = append([]Step{deb}, img.Steps...)
			}
		case "go":
			if g := d.goBuild(sb); g != nil {
				img.Steps = append(img.Steps, g)
			}
		case "copy":
			if c := d.copyBlock(sb); c != nil {
				img.Steps = append(img.Steps, c)
			}
		case "run":
			if r := d.runStep(sb); d.checkRun(img, r) {
				img.Steps = append(img.Steps, r)
			}
		case "file":
			f := d.fileStep(sb)
			if f == nil {
				continue
			}
			if first, dup := files[f.Path]; dup {
				d.errorf(sb.DefRange.Ptr(), "Duplicate file", "The file %s was already declared at %s.", f.Path, first)
				continue
			}
			files[f.Path] = sb.DefRange
			img.Steps = append(img.Steps, f)
		}
	}
	return img
}

// DockerScheme starts a base read from the local Docker engine.
const DockerScheme = "docker://"

// from decodes an image's base. `image.NAME` refers to another image block; "scratch"
// is the empty base; a string starting with ".", ".." or "/" is a path to an OCI layout
// directory or a file: a rootfs tarball or an image archive (`docker save`, or an OCI
// layout in a tar), told apart by their content when baked; "docker://REF" is an image
// of the local Docker engine; anything else is a registry reference.
func (d *decoder) from(attr *hcl.Attribute) From {
	rng := attr.Expr.Range()
	if tr, diags := hcl.AbsTraversalForExpr(attr.Expr); !diags.HasErrors() && tr.RootName() == "image" {
		if len(tr) == 2 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok {
				return From{Kind: FromImage, Ref: a.Name, Range: rng}
			}
		}
		d.errorf(&rng, "Invalid image reference", "Refer to another image block as image.NAME.")
		return From{}
	}
	s, ok := d.str(hcl.Attributes{"from": attr}, "from")
	if !ok {
		return From{}
	}
	switch {
	case s == "scratch":
		return From{Kind: FromScratch, Ref: s, Range: rng}
	case strings.HasPrefix(s, DockerScheme):
		if d.opts.Confine {
			// The daemon's engine holds other projects' images: a commit may not take one.
			d.errorf(&rng, "Base not allowed here", "%q: a pipeline's spec cannot name images of the daemon's Docker engine, which may hold other projects' images. Push the base to a registry and name it there (by digest), or bake it in an image block.", s)
			return From{}
		}
		ref := strings.TrimPrefix(s, DockerScheme)
		if !isImageID(ref) {
			if _, err := name.ParseReference(ref); err != nil {
				d.errorf(&rng, "Invalid Docker image reference", "%q names no image: after docker:// write an image reference (docker://python:3.12-slim) or an image ID (docker://sha256:...): %s.", s, err)
				return From{}
			}
		}
		return From{Kind: FromDocker, Ref: ref, Range: rng}
	case s == "." || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || filepath.IsAbs(s):
		if !d.confinePath(rng, "base image path", s) {
			return From{}
		}
		p := resolve(d.dir, s)
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			d.errorf(&rng, "Missing base image", "There is no OCI layout directory, rootfs tarball or image archive at %s (resolved against %s). An image in the local Docker engine is named docker://NAME.", s, d.dir)
			return From{}
		case fi.IsDir():
			if _, err := os.Stat(filepath.Join(p, "oci-layout")); err != nil {
				d.errorf(&rng, "Not an OCI image layout", "The directory %s has no oci-layout file. A directory base must be an OCI image layout (as written by `crane pull --format=oci` or `skopeo copy oci:`).", s)
				return From{}
			}
			return From{Kind: FromLayout, Ref: p, Range: rng}
		default:
			return From{Kind: FromTarball, Ref: p, Range: rng}
		}
	default:
		if _, err := name.ParseReference(s, name.StrictValidation); err != nil {
			if _, err2 := name.ParseReference(s); err2 != nil {
				d.errorf(&rng, "Invalid base image reference", "%q is neither \"scratch\", a path (starting with ./ or /), an image of the local Docker engine (docker://NAME), nor a registry reference: %s.", s, err2)
				return From{}
			}
		}
		return From{Kind: FromRegistry, Ref: s, Range: rng}
	}
}

// isImageID reports whether s is a full image ID, sha256: and 64 hex digits.
func isImageID(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	return strings.Trim(hex, "0123456789abcdef") == ""
}

func (d *decoder) platform(a hcl.Attributes) Platform {
	arch := d.opts.DefaultArch
	if arch == "" {
		arch = runtime.GOARCH
	}
	s, ok := d.str(a, "platform")
	if !ok {
		return Platform{OS: "linux", Arch: arch}
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		d.errorf(a["platform"].Expr.Range().Ptr(), "Invalid platform", "%q is not a platform: write os/arch[/variant], like \"linux/amd64\" or \"linux/arm/v7\".", s)
		return Platform{OS: "linux", Arch: arch}
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p
}

func (d *decoder) expose(a hcl.Attributes) []string {
	var out []string
	for _, s := range d.strList(a, "expose") {
		port, proto, found := strings.Cut(s, "/")
		if !found {
			proto = "tcp"
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			d.errorf(a["expose"].Expr.Range().Ptr(), "Invalid port", "%q is not a port: write PORT or PORT/PROTO, like 8080 or \"53/udp\".", s)
			continue
		}
		out = append(out, strconv.Itoa(n)+"/"+proto)
	}
	return out
}

// absPath checks that p is an absolute path in the image and returns it cleaned.
func (d *decoder) absPath(rng hcl.Range, what, p string) string {
	if !path.IsAbs(p) {
		d.errorf(&rng, "Path must be absolute", "The %s %q is a path inside the image and must start with \"/\".", what, p)
		return p
	}
	return path.Clean(p)
}

func (d *decoder) goBuild(b *hcl.Block) *GoBuild {
	content, diags := b.Body.Content(goSchema)
	d.add(diags)
	a := content.Attributes
	g := &GoBuild{Dir: d.dir, Range: b.DefRange}
	if s, ok := d.str(a, "dir"); ok {
		g.Dir = resolve(d.dir, s)
		if !d.confinePath(a["dir"].Expr.Range(), "go build directory", s) {
			return nil
		}
		if fi, err := os.Stat(g.Dir); err != nil || !fi.IsDir() {
			d.errorf(a["dir"].Expr.Range().Ptr(), "Missing directory", "There is no directory at %s (resolved against %s).", s, d.dir)
		}
	}
	pkg, ok := d.str(a, "package")
	if !ok {
		return nil
	}
	g.Package = pkg
	if pkg == "." || strings.HasPrefix(pkg, "./") || strings.HasPrefix(pkg, "../") {
		rel, err := filepath.Rel(d.dir, filepath.Join(g.Dir, pkg))
		if err != nil {
			rel = pkg
		}
		if !d.confinePath(a["package"].Expr.Range(), "go package", rel) {
			return nil
		}
		if fi, err := os.Stat(filepath.Join(g.Dir, pkg)); err != nil || !fi.IsDir() {
			d.errorf(a["package"].Expr.Range().Ptr(), "Missing Go package", "There is no directory %s in %s for the Go package.", pkg, g.Dir)
		}
	}
	g.Ldflags = d.strList(a, "ldflags")
	g.Tags = d.strList(a, "tags")
	g.CGO = d.boolean(a, "cgo")
	g.Env = d.strMap(a, "env")
	if s, ok := d.str(a, "to"); ok {
		g.To = d.absPath(a["to"].Expr.Range(), "go binary path", s)
	}
	return g
}

func (d *decoder) copyStep(b *hcl.Block) *Copy {
	content, diags := b.Body.Content(copySchema)
	d.add(diags)
	a := content.Attributes
	c := &Copy{Source: b.Labels[0], Path: resolve(d.dir, b.Labels[0]), Range: b.DefRange}
	if !d.confinePath(b.LabelRanges[0], "copy source", c.Source) {
		return nil
	}
	if _, err := os.Lstat(c.Path); err != nil {
		d.errorf(b.LabelRanges[0].Ptr(), "Missing source file", "There is no file or directory at %s (resolved against %s).", c.Source, d.dir)
	}
	if s, ok := d.str(a, "to"); ok {
		c.To = d.absPath(a["to"].Expr.Range(), "copy destination", s)
		if strings.HasSuffix(s, "/") && c.To != "/" {
			c.To += "/" // a file copied to "dir/" lands in dir under its own name
		}
	}
	c.Mode, _ = d.mode(a, "mode")
	c.Owner = d.owner(a, "owner")
	c.Exclude = d.strList(a, "exclude")
	for _, pat := range c.Exclude {
		if _, err := path.Match(pat, ""); err != nil {
			d.errorf(a["exclude"].Expr.Range().Ptr(), "Invalid exclude pattern", "%q is not a valid pattern: %s.", pat, err)
		}
	}
	return c
}

// packagesStep decodes `packages { debian { suite = ..., packages = [...] } }`.
func (d *decoder) packagesStep(b *hcl.Block) *Debian {
	content, diags := b.Body.Content(packagesSchema)
	d.add(diags)
	if len(content.Blocks) != 1 {
		d.errorf(b.DefRange.Ptr(), "Invalid packages block", "A packages block holds one debian block: debian { suite = \"bookworm\", packages = [\"python3\"] }.")
		return nil
	}
	db := content.Blocks[0]
	dc, diags := db.Body.Content(debianSchema)
	d.add(diags)
	a := dc.Attributes
	deb := &Debian{Range: db.DefRange}
	deb.Suite, _ = d.str(a, "suite")
	deb.Packages = d.strList(a, "packages")
	deb.Repository, _ = d.str(a, "repository")
	deb.Docs = d.boolean(a, "docs")
	if attr, ok := a["suite"]; ok && (deb.Suite == "" || strings.ContainsAny(deb.Suite, "/ \t")) {
		d.errorf(attr.Expr.Range().Ptr(), "Invalid suite", "%q is not a suite: name one such as \"bookworm\".", deb.Suite)
	}
	if attr, ok := a["packages"]; ok && len(deb.Packages) == 0 {
		d.errorf(attr.Expr.Range().Ptr(), "No packages", "Name at least one package to install.")
	}
	for _, p := range deb.Packages {
		if p == "" || strings.ContainsAny(p, " \t,/|") {
			d.errorf(a["packages"].Expr.Range().Ptr(), "Invalid package name", "%q is not a package name (NAME or NAME=VERSION).", p)
		}
	}
	if attr, ok := a["repository"]; ok && !strings.HasPrefix(deb.Repository, "http://") && !strings.HasPrefix(deb.Repository, "https://") {
		d.errorf(attr.Expr.Range().Ptr(), "Invalid repository", "%q is not an http:// or https:// URI of a Debian archive's root.", deb.Repository)
	}
	return deb
}

func (d *decoder) fileStep(b *hcl.Block) *File {
	content, diags := b.Body.Content(fileSchema)
	d.add(diags)
	a := content.Attributes
	f := &File{Path: d.absPath(b.LabelRanges[0], "file path", b.Labels[0]), Mode: 0o644, Range: b.DefRange}
	content2, ok := d.str(a, "content")
	if !ok {
		return nil
	}
	f.Content = content2
	if m, ok := d.mode(a, "mode"); ok {
		f.Mode = *m
	}
	f.Owner = d.owner(a, "owner")
	return f
}
