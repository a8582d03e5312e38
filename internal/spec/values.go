package spec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// eval evaluates an expression to a value of type ty. References to undeclared
// variables are reported as such, before HCL would report them as missing attributes.
// ok is false when the value is unusable (a problem was reported) or null (unset).
//
// A value that is, or holds, a secret or a sensitive variable is an error: it would be
// written where everyone who can read the image, the server's configuration or the
// plan sees it. Only evalMarked takes such values.
func (d *decoder) eval(attr *hcl.Attribute, ty cty.Type) (cty.Value, bool) {
	for _, tr := range attr.Expr.Variables() {
		if len(tr) < 2 {
			continue
		}
		a, ok := tr[1].(hcl.TraverseAttr)
		if !ok {
			continue
		}
		switch {
		case tr.RootName() == "var" && !d.vars[a.Name]:
			if dym := didYouMean(a.Name, keys(d.vars)); dym != "" {
				d.errorf(tr.SourceRange().Ptr(), "Reference to undeclared variable", "There is no variable named %q.%s", a.Name, dym)
			} else {
				d.errorf(tr.SourceRange().Ptr(), "Reference to undeclared variable", "There is no variable named %q. Declare it with a variable block:\n\n  variable %q {\n    default = \"...\"\n  }", a.Name, a.Name)
			}
			return cty.NilVal, false
		case tr.RootName() == "secret" && !d.secretNames[a.Name]:
			if dym := didYouMean(a.Name, keys(d.secretNames)); dym != "" {
				d.errorf(tr.SourceRange().Ptr(), "Reference to undeclared secret", "There is no secret named %q.%s", a.Name, dym)
			} else {
				d.errorf(tr.SourceRange().Ptr(), "Reference to undeclared secret", "There is no secret named %q. Declare it with a secret block:\n\n  secret %q {\n    env = \"VARIABLE\"   # or file = \"path\", or command = [...]\n  }", a.Name, a.Name)
			}
			return cty.NilVal, false
		}
	}
	v, diags := attr.Expr.Value(d.ctx)
	d.add(diags)
	if diags.HasErrors() || !v.IsWhollyKnown() {
		return cty.NilVal, false
	}
	if v.ContainsMarked() {
		if !d.marked {
			d.errorf(attr.Expr.Range().Ptr(), "Secret value not allowed here", "%q would hold a secret or a sensitive variable, and it is not a secret place: it is written into the image or the server's configuration, where anyone who can read them sees it. Secrets go into a service's env or secret_files.", attr.Name)
			return cty.NilVal, false
		}
	}
	if v.IsNull() {
		return v, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity:    hcl.DiagError,
			Summary:     "Incorrect attribute value type",
			Detail:      fmt.Sprintf("Inappropriate value for attribute %q: %s.", attr.Name, convert.MismatchMessage(v.Type(), ty)),
			Subject:     attr.Expr.Range().Ptr(),
			Expression:  attr.Expr,
			EvalContext: d.ctx,
		})
		return cty.NilVal, false
	}
	return cv, true
}

// evalMarked is eval for the places that may hold secrets; marks are kept.
func (d *decoder) evalMarked(attr *hcl.Attribute, ty cty.Type) (cty.Value, bool) {
	d.marked = true
	defer func() { d.marked = false }()
	return d.eval(attr, ty)
}

func (d *decoder) str(attrs hcl.Attributes, name string) (string, bool) {
	attr, ok := attrs[name]
	if !ok {
		return "", false
	}
	v, ok := d.eval(attr, cty.String)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (d *decoder) boolean(attrs hcl.Attributes, name string) bool {
	attr, ok := attrs[name]
	if !ok {
		return false
	}
	v, ok := d.eval(attr, cty.Bool)
	return ok && v.True()
}

func (d *decoder) strList(attrs hcl.Attributes, name string) []string {
	attr, ok := attrs[name]
	if !ok {
		return nil
	}
	v, ok := d.eval(attr, cty.List(cty.String))
	if !ok {
		return nil
	}
	out := []string{}
	for _, e := range v.AsValueSlice() {
		if e.IsNull() {
			d.errorf(attr.Expr.Range().Ptr(), "Null value in list", "Attribute %q must not contain null elements.", name)
			continue
		}
		out = append(out, e.AsString())
	}
	return out
}

func (d *decoder) strMap(attrs hcl.Attributes, name string) map[string]string {
	attr, ok := attrs[name]
	if !ok {
		return nil
	}
	v, ok := d.eval(attr, cty.Map(cty.String))
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		if e.IsNull() {
			d.errorf(attr.Expr.Range().Ptr(), "Null value in map", "The key %q of attribute %q is null; give it a string value.", k, name)
			continue
		}
		out[k] = e.AsString()
	}
	return out
}

// mode reads a file mode written as an octal string ("0644") or as the number 644,
// which HCL reads as decimal but every user means as octal.
func (d *decoder) mode(attrs hcl.Attributes, name string) (*uint32, bool) {
	s, ok := d.str(attrs, name)
	if !ok {
		return nil, false
	}
	m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || m > 0o7777 {
		d.errorf(attrs[name].Expr.Range().Ptr(), "Invalid file mode", "%q is not a file mode: write it in octal as a string, like \"0644\" or \"0755\".", s)
		return nil, false
	}
	m32 := uint32(m)
	return &m32, true
}

func (d *decoder) owner(attrs hcl.Attributes, name string) Owner {
	s, ok := d.str(attrs, name)
	if !ok {
		return Owner{}
	}
	u, g, found := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !found || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		d.errorf(attrs[name].Expr.Range().Ptr(), "Invalid owner", "%q is not an owner: write it as numeric \"uid:gid\", like \"65532:65532\".", s)
		return Owner{}
	}
	return Owner{UID: uid, GID: gid}
}
