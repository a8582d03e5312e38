package spec

import (
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// EnvPrefix marks environment variables that set spec variables: KILN_VAR_version=1.2
// sets var.version.
const EnvPrefix = "KILN_VAR_"

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "default"},
		{Name: "type"},
		{Name: "description"},
		{Name: "sensitive"},
	},
}

// variables decodes variable blocks, applies overrides (-var over KILN_VAR_ over
// default) and builds the evaluation context every other expression is evaluated in.
// Sensitive variables (sensitive = true, or named in Options.Sensitive) are marked, so
// that their values can only go where secrets go.
func (d *decoder) variables(blocks []*hcl.Block) (map[string]string, []string) {
	values := map[string]cty.Value{}
	sensitive := map[string]bool{}
	for _, name := range d.opts.Sensitive {
		sensitive[name] = true
	}
	declared := map[string]*hcl.Block{}
	types := map[string]cty.Type{}
	for _, b := range blocks {
		name := b.Labels[0]
		if first, dup := declared[name]; dup {
			d.errorf(b.DefRange.Ptr(), "Duplicate variable", "A variable named %q was already declared at %s. Variable names must be unique.", name, first.DefRange)
			continue
		}
		declared[name] = b
		if !hclsyntax.ValidIdentifier(name) {
			d.errorf(b.LabelRanges[0].Ptr(), "Invalid variable name", "%q is not a valid identifier: use letters, digits, '_' and '-', starting with a letter.", name)
		}
		content, diags := b.Body.Content(variableSchema)
		d.add(diags)
		ty := cty.DynamicPseudoType
		if attr, ok := content.Attributes["type"]; ok {
			t, diags := typeexpr.TypeConstraint(attr.Expr)
			d.add(diags)
			if !diags.HasErrors() {
				ty = t
			}
		}
		types[name] = ty
		if attr, ok := content.Attributes["sensitive"]; ok {
			v, diags := attr.Expr.Value(nil)
			d.add(diags)
			if !diags.HasErrors() {
				if v.Type() != cty.Bool || v.IsNull() {
					d.errorf(attr.Expr.Range().Ptr(), "Invalid sensitive", "sensitive is true or false.")
				} else if v.True() {
					sensitive[name] = true
				}
			}
		}
		if attr, ok := content.Attributes["default"]; ok {
			v, diags := attr.Expr.Value(nil) // defaults are literals: no references
			d.add(diags)
			if diags.HasErrors() {
				continue
			}
			cv, err := convert.Convert(v, ty)
			if err != nil {
				d.errorf(attr.Expr.Range().Ptr(), "Invalid default value for variable", "This default value is not compatible with the variable's type constraint: %s.", err)
				continue
			}
			values[name] = cv
		}
	}
	d.vars = map[string]bool{}
	for name := range declared {
		d.vars[name] = true
	}

	environ := d.opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		name := strings.TrimPrefix(k, EnvPrefix)
		if declared[name] == nil {
			continue // like Terraform: stray environment variables are not an error
		}
		d.override(values, name, v, types[name], "environment variable "+k)
	}
	for _, name := range slices.Sorted(maps.Keys(d.opts.Vars)) {
		if declared[name] == nil {
			d.errorf(nil, "Value for undeclared variable", "A variable named %q was assigned with -var, but the spec declares no such variable. Declare it with a variable block, or remove the -var.", name)
			continue
		}
		d.override(values, name, d.opts.Vars[name], types[name], "-var "+name)
	}

	for name, b := range declared {
		if _, ok := values[name]; !ok {
			d.errorf(b.DefRange.Ptr(), "No value for required variable", "The variable %q has no default. Set it with -var %s=VALUE or the environment variable %s%s.", name, name, EnvPrefix, name)
			values[name] = cty.DynamicVal
		}
	}

	marked := make(map[string]cty.Value, len(values))
	var names []string
	for name, v := range values {
		if sensitive[name] && declared[name] != nil {
			v = v.Mark(markSensitive)
			names = append(names, name)
		}
		marked[name] = v
	}
	slices.Sort(names)
	d.ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(marked)},
		Functions: functions(d.dir),
	}
	rendered := map[string]string{}
	for name, v := range values {
		rendered[name] = render(v)
	}
	return rendered, names
}

// override sets a variable from a command-line or environment string. Strings are taken
// as they are; other types are parsed as HCL expressions, as Terraform does.
func (d *decoder) override(values map[string]cty.Value, name, raw string, ty cty.Type, source string) {
	if ty == cty.DynamicPseudoType || ty == cty.String {
		values[name] = cty.StringVal(raw)
		return
	}
	// Not every value is an expression ("many" is a bare word): take those as strings and
	// let the conversion below say what is wrong with them.
	v := cty.StringVal(raw)
	if expr, diags := hclsyntax.ParseExpression([]byte(raw), source, hcl.InitialPos); !diags.HasErrors() {
		if ev, diags := expr.Value(nil); !diags.HasErrors() {
			v = ev
		}
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		d.errorf(nil, "Invalid value for variable", "The value of %s is not a %s: %s.", source, typeexpr.TypeString(ty), err)
		return
	}
	values[name] = cv
}

// render turns a value into the string a user would write for it.
func render(v cty.Value) string {
	if !v.IsKnown() || v.IsNull() {
		return ""
	}
	if v.Type() == cty.String {
		return v.AsString()
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}
