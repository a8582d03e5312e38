package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// outsideCheckout is the rule a confined spec breaks by naming a path outside its
// directory, as every such error states it.
const outsideCheckout = "a pipeline's spec may only name files inside its checkout"

// rootFiles finds files only inside a directory: names are relative to it, and neither
// "..", an absolute name nor a symlink can lead out of it (os.Root enforces it).
type rootFiles struct {
	root *os.Root
	dir  string
}

func (r rootFiles) open(name string) (*os.File, error) {
	if err := checkLocal(name); err != nil {
		return nil, err
	}
	f, err := r.root.OpenFile(name, openFlags, 0)
	return f, r.wrap(name, err)
}

func (r rootFiles) stat(name string) (fs.FileInfo, error) {
	if err := checkLocal(name); err != nil {
		return nil, err
	}
	fi, err := r.root.Stat(name)
	return fi, r.wrap(name, err)
}

func (r rootFiles) path(name string) string { return filepath.Join(r.dir, name) }

// wrap names the rule when os.Root refused a name for leading out, through a symlink.
func (r rootFiles) wrap(name string, err error) error {
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fmt.Errorf("cannot open %s inside %s (%s): %w", name, r.dir, outsideCheckout, err)
}

// checkLocal refuses a name that is absolute or climbs out of the directory with "..".
func checkLocal(name string) error {
	if !filepath.IsLocal(name) && filepath.Clean(name) != "." {
		return fmt.Errorf("%s is outside the spec's directory: %s", name, outsideCheckout)
	}
	return nil
}

// confinePath reports, at rng, a path the spec names that is absolute or leads out of
// its directory, when the spec is confined. It returns false if it reported one.
func (d *decoder) confinePath(rng hcl.Range, what, p string) bool {
	if !d.opts.Confine || checkLocal(p) == nil {
		return true
	}
	d.errorf(&rng, "Path outside the checkout", "The %s %q is outside the spec's directory %s: %s. Name a path relative to the spec, without \"..\" leading out.", what, p, d.dir, outsideCheckout)
	return false
}

// confinedBody wraps a body so every expression in it, at any depth, calls the confined
// file functions, whatever evaluation context the decoder passes: the context is built
// where variables are decoded, and this keeps confinement in one place.
type confinedBody struct {
	hcl.Body
	funcs map[string]function.Function
}

func (b confinedBody) Content(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	c, diags := b.Body.Content(s)
	return b.content(c), diags
}

func (b confinedBody) PartialContent(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Body, hcl.Diagnostics) {
	c, rest, diags := b.Body.PartialContent(s)
	return b.content(c), confinedBody{rest, b.funcs}, diags
}

func (b confinedBody) JustAttributes() (hcl.Attributes, hcl.Diagnostics) {
	attrs, diags := b.Body.JustAttributes()
	return b.attributes(attrs), diags
}

func (b confinedBody) content(c *hcl.BodyContent) *hcl.BodyContent {
	if c == nil {
		return nil
	}
	out := *c
	out.Attributes = b.attributes(c.Attributes)
	out.Blocks = make(hcl.Blocks, len(c.Blocks))
	for i, blk := range c.Blocks {
		nb := *blk
		nb.Body = confinedBody{blk.Body, b.funcs}
		out.Blocks[i] = &nb
	}
	return &out
}

func (b confinedBody) attributes(attrs hcl.Attributes) hcl.Attributes {
	if attrs == nil {
		return nil
	}
	out := make(hcl.Attributes, len(attrs))
	for name, a := range attrs {
		na := *a
		na.Expr = confinedExpr{a.Expr, b.funcs}
		out[name] = &na
	}
	return out
}

// confinedExpr evaluates its expression in a child of the given context that overrides
// the file functions. It unwraps to the expression, so hcl.AbsTraversalForExpr and
// friends see through it.
type confinedExpr struct {
	hcl.Expression
	funcs map[string]function.Function
}

func (e confinedExpr) Value(ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	if ctx == nil {
		return e.Expression.Value(nil) // a literal context: no functions at all
	}
	child := ctx.NewChild()
	child.Functions = e.funcs
	return e.Expression.Value(child)
}

func (e confinedExpr) UnwrapExpression() hcl.Expression { return e.Expression }
