package spec

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// forBudget is the work all for expressions of one spec may do together. Nesting for
// expressions multiplies their iterations ([for a in x : [for b in x : ...]]), so no
// limit on one expression's size bounds them; this does. Its counts are MaxForWork units:
// one per iteration, plus one per element and per 16 bytes of string it produces.
type forBudget struct {
	left     int
	reported bool
}

// limitForExprs makes every for expression in body (and in its templates' %{for}
// directives, which HCL parses into for expressions too) draw on one budget.
func limitForExprs(body *hclsyntax.Body) {
	var fors []*hclsyntax.ForExpr
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		if f, ok := n.(*hclsyntax.ForExpr); ok {
			fors = append(fors, f)
		}
		return nil
	})
	// Wrapped only after the walk, so a for expression directly inside another is seen.
	b := &forBudget{left: MaxForWork}
	for _, f := range fors {
		rng := f.Range()
		f.ValExpr = &budgetedExpr{f.ValExpr, b, rng}
		if f.KeyExpr != nil {
			f.KeyExpr = &budgetedExpr{f.KeyExpr, b, rng}
		}
		if f.CondExpr != nil {
			f.CondExpr = &budgetedExpr{f.CondExpr, b, rng}
		}
	}
}

// budgetedExpr is a part of a for expression evaluated once per iteration. Once the
// budget is spent it evaluates to an unknown value, so the iterations left end at once;
// the first to find it spent reports it.
type budgetedExpr struct {
	hclsyntax.Expression
	b   *forBudget
	rng hcl.Range // of the for expression
}

func (e *budgetedExpr) Value(ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	if e.b.left <= 0 {
		return cty.DynamicVal, e.b.spent(e.rng)
	}
	v, diags := e.Expression.Value(ctx)
	e.b.left -= 1 + work(v, e.b.left)
	if e.b.left < 0 {
		return cty.DynamicVal, append(diags, e.b.spent(e.rng)...)
	}
	return v, diags
}

func (b *forBudget) spent(rng hcl.Range) hcl.Diagnostics {
	if b.reported {
		return nil
	}
	b.reported = true
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "For expressions do too much work",
		Detail:   fmt.Sprintf("The spec's for expressions together iterate and produce more than kiln evaluates (%d units: one per iteration, element, and 16 bytes of string). Iterate over less, or nest fewer for expressions.", MaxForWork),
		Subject:  rng.Ptr(),
	}}
}

// work is the size of v in budget units, counted no further than limit.
func work(v cty.Value, limit int) int {
	v, _ = v.Unmark()
	if !v.IsKnown() || v.IsNull() {
		return 1
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return 1 + len(v.AsString())/16
	case ty.IsCollectionType() || ty.IsTupleType() || ty.IsObjectType():
		n := 1
		for it := v.ElementIterator(); it.Next() && n <= limit; {
			_, e := it.Element()
			n += work(e, limit-n)
		}
		return n
	}
	return 1
}
