package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// DefaultFile is the spec file kiln looks for in a directory, before its JSON twin.
const DefaultFile = "kiln.hcl"

// Options are the inputs to a spec besides its source.
type Options struct {
	// Vars are -var name=value overrides; they win over the environment.
	Vars map[string]string
	// Environ is consulted for KILN_VAR_<name> overrides; os.Environ() when nil.
	Environ []string
	// DefaultArch is the architecture of images without a platform; the host's when empty.
	DefaultArch string
	// Dir, if set, is the directory relative paths resolve against, instead of the spec
	// file's: for a spec parsed under a display name (a checkout's "kiln.hcl").
	Dir string
	// Sensitive names variables that are sensitive whatever the spec declares: a
	// pipeline's commit cannot make a value its applier marked sensitive plain.
	Sensitive []string
	// Confine keeps the spec inside its directory, for a spec from a commit a pipeline
	// bakes: file() and fileexists() open files through an os.Root of the directory, so
	// no absolute path, ".." or symlink reaches outside it; the paths of copy sources,
	// from and go's dir and package must be relative and stay inside it (the bake checks
	// their symlinks); and the JSON form may not use for expressions. Without it, a spec
	// may name any file the user can read.
	Confine bool
}

// Find returns the spec file of dir: kiln.hcl, else kiln.hcl.json.
func Find(dir string) (string, error) {
	for _, name := range []string{DefaultFile, DefaultFile + ".json"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s (or %s.json) in %s: run kiln in a directory with a spec, or pass -C DIR or --file FILE", DefaultFile, DefaultFile, dir)
}

// Load reads and decodes the spec file at path. It returns every problem it finds, not
// only the first; the Config is usable only when the diagnostics have no errors. Even
// then, Files is set so callers can render the diagnostics with source snippets.
func Load(path string, opts Options) (*Config, hcl.Diagnostics) {
	src, err := readSource(path)
	if err != nil {
		return &Config{Filename: path, Files: map[string]*hcl.File{}}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read spec file",
			Detail:   err.Error(),
		}}
	}
	return Parse(path, src, opts)
}

// Parse decodes src as the spec file named filename (native syntax, or JSON when the name
// ends in .json). Relative paths in the spec resolve against filename's directory.
//
// src may be hostile: Parse first refuses a spec beyond the limits in limits.go, then
// bounds what evaluating it may cost. Every error it returns has a Subject, except
// those about opts themselves (-var for an undeclared variable, or a -var value of the
// wrong type) and a Confine directory that cannot be opened.
func Parse(filename string, src []byte, opts Options) (*Config, hcl.Diagnostics) {
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		dir = filepath.Dir(filename)
	}
	if opts.Dir != "" {
		dir = opts.Dir
	}
	if diags := checkLimits(filename, src, opts.Confine); diags.HasErrors() {
		return &Config{Dir: dir, Filename: filename, Files: map[string]*hcl.File{filename: {Bytes: src}}}, diags
	}
	p := hclparse.NewParser()
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(filename, ".json") {
		f, diags = p.ParseJSON(src, filename)
	} else {
		f, diags = p.ParseHCL(src, filename)
	}
	cfg := &Config{Dir: dir, Filename: filename, Files: p.Files()}
	if diags.HasErrors() {
		return cfg, collapseSyntax(filename, src, diags)
	}
	body := f.Body
	if sb, ok := body.(*hclsyntax.Body); ok {
		limitForExprs(sb)
	}
	if opts.Confine {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return cfg, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Cannot open the spec's directory",
				Detail:   fmt.Sprintf("A confined spec reads files only through its directory: %s.", err),
			}}
		}
		defer root.Close()
		body = confinedBody{body, specFunctions(rootFiles{root: root, dir: dir})}
	}
	d := &decoder{dir: dir, opts: opts}
	d.decode(cfg, body)
	diags = append(diags, d.diags...)
	// In source order, whatever order the checks ran in.
	sortByPlace(diags)
	return cfg, diags
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "image", LabelNames: []string{"name"}},
		{Type: "service", LabelNames: []string{"name"}},
		{Type: "pipeline", LabelNames: []string{"name"}},
		{Type: "secret", LabelNames: []string{"name"}},
		{Type: "runtime", LabelNames: []string{"name"}},
	},
}

// decoder accumulates diagnostics while decoding, so one run reports every problem.
type decoder struct {
	dir  string
	opts Options
	ctx  *hcl.EvalContext
	vars map[string]bool // declared variable names
	// secretNames are the declared secrets' names.
	secretNames map[string]bool
	// marked allows values marked secret or sensitive in the expression being
	// evaluated (see evalMarked); everywhere else they are an error.
	marked bool
	// where holds, for each decoded service, the range of each of its attributes and
	// blocks, by ValidateService's names, for the problems found after its block.
	where map[*Service]map[string]hcl.Range
	diags hcl.Diagnostics
}

func (d *decoder) add(diags hcl.Diagnostics) { d.diags = append(d.diags, diags...) }

func (d *decoder) errorf(rng *hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  rng,
	})
}

func (d *decoder) decode(cfg *Config, body hcl.Body) {
	content, diags := body.Content(rootSchema)
	d.add(diags)

	var varBlocks, imageBlocks, serviceBlocks, pipelineBlocks, secretBlocks, runtimeBlocks []*hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			varBlocks = append(varBlocks, b)
		case "image":
			imageBlocks = append(imageBlocks, b)
		case "service":
			serviceBlocks = append(serviceBlocks, b)
		case "pipeline":
			pipelineBlocks = append(pipelineBlocks, b)
		case "secret":
			secretBlocks = append(secretBlocks, b)
		case "runtime":
			runtimeBlocks = append(runtimeBlocks, b)
		}
	}
	cfg.Variables, cfg.Sensitive = d.variables(varBlocks)
	d.ctx.Variables["secret"] = d.secrets(cfg, secretBlocks)

	d.named("image", imageBlocks, func(b *hcl.Block) {
		if img := d.image(b); img != nil {
			cfg.Images = append(cfg.Images, img)
		}
	})
	d.checkBases(cfg)
	d.checkSteps(cfg)
	d.named("service", serviceBlocks, func(b *hcl.Block) { cfg.Services = append(cfg.Services, d.service(b)) })
	d.checkServices(cfg)
	d.named("pipeline", pipelineBlocks, func(b *hcl.Block) { cfg.Pipelines = append(cfg.Pipelines, d.pipeline(b)) })
	d.checkPipelines(cfg)
	d.runtime(cfg, runtimeBlocks)
}

// named calls decode for each block of kind whose name is not taken by an earlier one,
// reporting duplicates and names kiln cannot use (they become labels and file names).
func (d *decoder) named(kind string, blocks []*hcl.Block, decode func(*hcl.Block)) {
	seen := map[string]*hcl.Block{}
	article := "A"
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		article = "An"
	}
	title := strings.ToUpper(kind[:1]) + kind[1:]
	for _, b := range blocks {
		name := b.Labels[0]
		if first, dup := seen[name]; dup {
			d.errorf(b.DefRange.Ptr(), "Duplicate "+kind, "%s %s named %q was already declared at %s. %s names must be unique.", article, kind, name, first.DefRange, title)
			continue
		}
		seen[name] = b
		if !ValidName(name) {
			d.errorf(b.LabelRanges[0].Ptr(), "Invalid "+kind+" name", "%s name %q must start with a lowercase letter and contain only lowercase letters, digits, '-', '_' and '.' (not two dots in a row).", title, name)
		}
		decode(b)
	}
}

// checkBases reports bases naming undeclared images and cycles among image bases.
func (d *decoder) checkBases(cfg *Config) {
	byName := map[string]*Image{}
	for _, img := range cfg.Images {
		byName[img.Name] = img
	}
	for _, img := range cfg.Images {
		if img.From.Kind != FromImage {
			continue
		}
		if byName[img.From.Ref] == nil {
			d.errorf(img.From.Range.Ptr(), "Reference to undeclared image", "There is no image block named %q in this spec.%s", img.From.Ref, didYouMean(img.From.Ref, imageNames(cfg)))
		}
	}
	inCycle := map[string]bool{}
	for _, img := range cfg.Images {
		if inCycle[img.Name] {
			continue // reported at an earlier member
		}
		seen := map[string]bool{img.Name: true}
		path := []string{img.Name}
		for cur := img; cur.From.Kind == FromImage; {
			next := byName[cur.From.Ref]
			if next == nil {
				break
			}
			path = append(path, next.Name)
			if seen[next.Name] {
				if next == img {
					for _, n := range path {
						inCycle[n] = true
					}
					d.errorf(img.From.Range.Ptr(), "Cycle in image bases", "The images form a cycle: %s. An image cannot be built on itself.", strings.Join(path, " -> "))
				}
				break
			}
			seen[next.Name] = true
			cur = next
		}
	}
}

// imageNames are the names of the images of cfg.
func imageNames(cfg *Config) []string {
	var names []string
	for _, img := range cfg.Images {
		names = append(names, img.Name)
	}
	return names
}

// ValidName reports whether s is a name kiln can use for an image, service, pipeline or
// secret: it becomes part of labels, file names and URLs. A lowercase letter, then
// lowercase letters, digits, '-', '_' and '.', never "..".
func ValidName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
