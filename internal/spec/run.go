package spec

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Run runs a command in a sandbox over the image's base, its builder: the base's
// filesystem read-only, the inputs copied into a writable work directory, each output
// outside it a writable directory of its own, the cache directories kept between bakes,
// a private /tmp, and no network unless Network. The outputs' content, normalised,
// becomes the step's layer. A `run "NAME" { ... }` block.
type Run struct {
	Name    string
	Command []string // Command[0] is looked up in PATH when it has no "/"
	Inputs  []RunInput
	Workdir string   // absolute, in the sandbox; DefaultWorkdir when not given
	Outputs []string // absolute, cleaned; under Workdir or directories of their own
	Env     map[string]string
	Network bool
	Cache   []string // absolute, cleaned
	Range   hcl.Range
}

// RunInput is a file or directory of the spec's directory copied into a run step's
// work directory at the same relative path.
type RunInput struct {
	Source string // as written: relative to the spec's directory
	Path   string // absolute path on disk
}

// DefaultWorkdir is a run step's work directory when it names none.
const DefaultWorkdir = "/src"

func (r *Run) Describe() string { return "run " + r.Name }
func (r *Run) Where() hcl.Range { return r.Range }

// Run and CopyFrom are steps as GoBuild, Copy and File are.
var (
	_ Step = (*Run)(nil)
	_ Step = (*CopyFrom)(nil)
)

// CopyFrom copies a file or directory tree out of another image of the spec (its final
// filesystem), like Docker's COPY --from: a `copy "PATH" { from = image.NAME ... }`
// block. Its layer is made as a copy step's: owner and mode from the spec (the mode
// the file has in the image when none is given).
type CopyFrom struct {
	Image     string // the image block copied from
	Source    string // absolute path in that image, cleaned
	To        string // absolute path in this image; a trailing "/" puts a file inside
	Mode      *uint32
	Owner     Owner
	Exclude   []string
	Range     hcl.Range
	FromRange hcl.Range // the from attribute's expression
}

func (c *CopyFrom) Describe() string {
	return "copy image." + c.Image + ":" + c.Source + " -> " + c.To
}
func (c *CopyFrom) Where() hcl.Range { return c.Range }

// Needs returns the other images an image is baked from, in the order the spec names
// them, each once: its base when that is image.NAME, and the images it copies from.
func (img *Image) Needs() []string {
	var out []string
	if img.From.Kind == FromImage {
		out = append(out, img.From.Ref)
	}
	for _, st := range img.Steps {
		if c, ok := st.(*CopyFrom); ok && !slices.Contains(out, c.Image) {
			out = append(out, c.Image)
		}
	}
	return out
}

var runSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "command", Required: true},
		{Name: "inputs"},
		{Name: "workdir"},
		{Name: "outputs", Required: true},
		{Name: "env"},
		{Name: "network"},
		{Name: "cache"},
	},
}

// systemDirs are the sandbox's own: a work directory, output or cache is none of them
// and under none of them.
var systemDirs = []string{"/proc", "/dev", "/sys"}

// sandboxPath checks p, an absolute path in a run step's sandbox, is one a command can be
// given to write: not / and not a system directory. It reports at rng and returns false
// otherwise.
func (d *decoder) sandboxPath(rng hcl.Range, what, p string) bool {
	if p == "/" || slices.ContainsFunc(systemDirs, func(s string) bool { return within(p, s) }) {
		d.errorf(&rng, "Output outside the sandbox", "The %s %q is not a place a run step's command writes: it cannot be /, nor under %s, which are the sandbox's own.", what, p, strings.Join(systemDirs, ", "))
		return false
	}
	return true
}

// within reports whether p is dir or under it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func (d *decoder) runStep(b *hcl.Block) *Run {
	content, diags := b.Body.Content(runSchema)
	d.add(diags)
	a := content.Attributes
	r := &Run{Name: b.Labels[0], Workdir: DefaultWorkdir, Range: b.DefRange}
	if !ValidName(r.Name) {
		d.errorf(b.LabelRanges[0].Ptr(), "Invalid run step name", "Run step name %q must start with a lowercase letter and contain only lowercase letters, digits, '-', '_' and '.': it names the step's cache directories.", r.Name)
	}
	if _, ok := a["command"]; ok {
		r.Command = d.strList(a, "command")
		if len(r.Command) == 0 || r.Command[0] == "" {
			d.errorf(a["command"].Expr.Range().Ptr(), "Invalid command", "A run step's command is a program and its arguments, like [\"make\", \"all\"].")
		}
	}
	if s, ok := d.str(a, "workdir"); ok {
		r.Workdir = d.absPath(a["workdir"].Expr.Range(), "work directory", s)
		if path.IsAbs(s) && !d.sandboxPath(a["workdir"].Expr.Range(), "work directory", r.Workdir) {
			r.Workdir = DefaultWorkdir
		}
	}
	r.Env = d.strMap(a, "env")
	for k := range r.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			d.errorf(a["env"].Expr.Range().Ptr(), "Invalid environment variable name", "%q cannot be an environment variable name: it must be non-empty and contain no '=' or whitespace.", k)
		}
	}
	if attr, ok := a["network"]; ok {
		r.Network = d.boolean(a, "network")
		if r.Network && d.opts.Confine {
			// The sandbox would share the daemon's network: its loopback services too.
			d.errorf(attr.Expr.Range().Ptr(), "Network not allowed here", "A pipeline's spec cannot give a run step the network: the step would share the daemon's host network, loopback services included. Bake what needs downloads outside the pipeline (an image of its own, named by digest), or vendor the files into the repository.")
			r.Network = false
		}
	}
	r.Inputs = d.runInputs(a)
	r.Outputs = d.runOutputs(a, r.Workdir)
	if _, ok := a["cache"]; ok {
		for _, it := range d.items(a, "cache") {
			c, rng := it.value, it.rng
			if !path.IsAbs(c) {
				d.errorf(&rng, "Path must be absolute", "The cache directory %q is a path inside the sandbox and must start with \"/\".", c)
				continue
			}
			c = path.Clean(c)
			if !d.sandboxPath(rng, "cache directory", c) {
				continue
			}
			if o := overlap(c, append(append([]string{r.Workdir}, r.Outputs...), r.Cache...)); o != "" {
				d.errorf(&rng, "Overlapping directories", "The cache directory %s overlaps %s: a run step's work directory, outputs and cache directories are apart from one another.", c, o)
				continue
			}
			r.Cache = append(r.Cache, c)
		}
	}
	return r
}

// item is one string of a list attribute, with its own range where the syntax has one
// (the native syntax's list), else the list's.
type item struct {
	value string
	rng   hcl.Range
}

// items decodes the list of strings name with the range of each element.
func (d *decoder) items(a hcl.Attributes, name string) []item {
	attr, ok := a[name]
	if !ok {
		return nil
	}
	list := d.strList(a, name)
	elems := []hcl.Expression(nil)
	if t, ok := attr.Expr.(*hclsyntax.TupleConsExpr); ok && len(t.Exprs) == len(list) {
		for _, e := range t.Exprs {
			elems = append(elems, e)
		}
	}
	out := make([]item, len(list))
	for i, v := range list {
		out[i] = item{v, attr.Expr.Range()}
		if elems != nil {
			out[i].rng = elems[i].Range()
		}
	}
	return out
}

// overlap returns the first of others that p is, is under, or holds; "" if none.
func overlap(p string, others []string) string {
	for _, o := range others {
		if within(p, o) || within(o, p) {
			return o
		}
	}
	return ""
}

func (d *decoder) runInputs(a hcl.Attributes) []RunInput {
	var out []RunInput
	for _, it := range d.items(a, "inputs") {
		s, rng := it.value, it.rng
		if !filepath.IsLocal(s) && filepath.Clean(s) != "." {
			d.errorf(&rng, "Input outside the spec's directory", "The input %q must be a path relative to the spec's directory %s, without \"..\": it is copied into the work directory at that same relative path.", s, d.dir)
			continue
		}
		if first, _, _ := strings.Cut(filepath.ToSlash(filepath.Clean(s)), "/"); first == ".kiln" {
			d.errorf(&rng, "Invalid input", "The input %q is in kiln's state directory, which is never given to a command.", s)
			continue
		}
		in := RunInput{Source: s, Path: resolve(d.dir, s)}
		if _, err := os.Lstat(in.Path); err != nil {
			d.errorf(&rng, "Missing input", "There is no file or directory at %s (resolved against %s) for the run step's inputs.", s, d.dir)
			continue
		}
		out = append(out, in)
	}
	return out
}

// runOutputs decodes outputs: absolute paths, or relative to the work directory.
func (d *decoder) runOutputs(a hcl.Attributes, workdir string) []string {
	attr, ok := a["outputs"]
	if !ok {
		return nil
	}
	var out []string
	list := d.items(a, "outputs")
	if len(list) == 0 && d.strList(a, "outputs") != nil {
		d.errorf(attr.Expr.Range().Ptr(), "No outputs", "Name at least one output: a path whose content becomes the step's layer, like \"/out\".")
	}
	for _, it := range list {
		o, rng := it.value, it.rng
		p := o
		if !path.IsAbs(o) {
			p = path.Join(workdir, o)
			if !within(p, workdir) {
				d.errorf(&rng, "Output outside the sandbox", "The output %q leaves the work directory %s: name a path in it, or an absolute path for a directory of its own.", o, workdir)
				continue
			}
		}
		p = path.Clean(p)
		if !d.sandboxPath(rng, "output", p) {
			continue
		}
		if p != workdir && within(workdir, p) {
			d.errorf(&rng, "Overlapping directories", "The output %s holds the work directory %s: name the work directory itself, or paths in it.", p, workdir)
			continue
		}
		if prev := overlap(p, out); prev != "" {
			d.errorf(&rng, "Overlapping directories", "The output %s overlaps the output %s: name each path once.", p, prev)
			continue
		}
		out = append(out, p)
	}
	return out
}

// copyBlock decodes a copy block: from the spec's directory, or with from, out of
// another image.
func (d *decoder) copyBlock(b *hcl.Block) Step {
	peek, _, _ := b.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "from"}}})
	if _, ok := peek.Attributes["from"]; ok {
		content, diags := b.Body.Content(copyFromSchema)
		d.add(diags)
		if c := d.copyFromImage(b, content); c != nil {
			return c
		}
		return nil
	}
	if c := d.copyStep(b); c != nil {
		return c
	}
	return nil
}

// copyFromSchema is copySchema with from.
var copyFromSchema = &hcl.BodySchema{
	Attributes: append([]hcl.AttributeSchema{{Name: "from", Required: true}}, copySchema.Attributes...),
}

// checkRun reports a run step of img named as an earlier one, or over scratch; false
// then.
func (d *decoder) checkRun(img *Image, r *Run) bool {
	if img.From.Kind == FromScratch {
		d.errorf(r.Range.Ptr(), "Run step on scratch", "A run step runs its command over the image's base, and scratch has no programs: build this image from one that has the command (from = image.NAME, such as an image with packages, or a registry image); a scratch image then takes what it makes with copy \"/path\" { from = image.%s }.", img.Name)
		return false
	}
	for _, st := range img.Steps {
		if prev, ok := st.(*Run); ok && prev.Name == r.Name {
			d.errorf(r.Range.Ptr(), "Duplicate run step", "A run step named %q was already declared at %s. Run step names are unique in an image: they name the step's cache directories.", r.Name, prev.Range)
			return false
		}
	}
	return true
}

// copyFromImage decodes a copy block with a from attribute: PATH is inside that image.
func (d *decoder) copyFromImage(b *hcl.Block, content *hcl.BodyContent) *CopyFrom {
	a := content.Attributes
	attr := a["from"]
	c := &CopyFrom{Range: b.DefRange, FromRange: attr.Expr.Range()}
	tr, diags := hcl.AbsTraversalForExpr(attr.Expr)
	if diags.HasErrors() || tr.RootName() != "image" || len(tr) != 2 {
		d.errorf(c.FromRange.Ptr(), "Invalid image reference", "A copy's from names another image block of the spec, as image.NAME; without from, the source is a path of the spec's directory.")
		return nil
	}
	ta, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		d.errorf(c.FromRange.Ptr(), "Invalid image reference", "Refer to another image block as image.NAME.")
		return nil
	}
	c.Image = ta.Name
	c.Source = d.absPath(b.LabelRanges[0], "path copied from an image", b.Labels[0])
	if s, ok := d.str(a, "to"); ok {
		c.To = d.absPath(a["to"].Expr.Range(), "copy destination", s)
		if strings.HasSuffix(s, "/") && c.To != "/" {
			c.To += "/"
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

// checkSteps reports what the steps of the images need of the others: a copy from an
// undeclared image, and a cycle through a copy (an image that needs itself to be baked
// first). Cycles of bases alone are checkBases'.
func (d *decoder) checkSteps(cfg *Config) {
	byName := map[string]*Image{}
	for _, img := range cfg.Images {
		byName[img.Name] = img
	}
	reported := map[string]bool{}
	for _, img := range cfg.Images {
		for _, st := range img.Steps {
			c, ok := st.(*CopyFrom)
			if !ok {
				continue
			}
			if byName[c.Image] == nil {
				d.errorf(c.FromRange.Ptr(), "Reference to undeclared image", "There is no image block named %q in this spec.%s", c.Image, didYouMean(c.Image, imageNames(cfg)))
				continue
			}
			p, ok := needPath(byName, c.Image, img.Name)
			if !ok {
				continue
			}
			names := []string{img.Name, c.Image}
			steps := []string{need{img.Name, c.Image, true}.String()}
			for _, e := range p {
				names = append(names, e.to)
				steps = append(steps, e.String())
			}
			slices.Sort(names)
			if k := strings.Join(slices.Compact(names), " "); !reported[k] {
				reported[k] = true
				d.errorf(c.FromRange.Ptr(), "Cycle between images", "The images form a cycle: %s. An image cannot need itself to be baked first.", strings.Join(steps, ", "))
			}
		}
	}
}

// need is one image needing another: built on it, or copying from it.
type need struct {
	from, to string
	copy     bool
}

func (n need) String() string {
	if n.copy {
		return n.from + " copies from " + n.to
	}
	return n.from + " is built on " + n.to
}

// needs are the edges out of img.
func needs(img *Image) []need {
	var out []need
	if img.From.Kind == FromImage {
		out = append(out, need{img.Name, img.From.Ref, false})
	}
	for _, st := range img.Steps {
		if c, ok := st.(*CopyFrom); ok {
			out = append(out, need{img.Name, c.Image, true})
		}
	}
	return out
}

// needPath returns a shortest chain of needs from image start to image goal (none
// when start is goal), and whether there is one.
func needPath(byName map[string]*Image, start, goal string) ([]need, bool) {
	prev := map[string]need{}
	seen := map[string]bool{start: true}
	queue := []string{start}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == goal {
			var p []need
			for n := cur; n != start; n = prev[n].from {
				p = append([]need{prev[n]}, p...)
			}
			return p, true
		}
		img := byName[cur]
		if img == nil {
			continue
		}
		for _, e := range needs(img) {
			if !seen[e.to] {
				seen[e.to] = true
				prev[e.to] = e
				queue = append(queue, e.to)
			}
		}
	}
	return nil, false
}
