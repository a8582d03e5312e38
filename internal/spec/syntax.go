package spec

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// collapseSyntax reduces the syntax errors HCL reports for a file to the ones a person
// should fix. One slip can make HCL report many: its lexer reports every bad token, and
// a missing quote makes it read every later newline as one inside a string; the JSON
// parser stops at its first error and then reports every object around it as unclosed.
// For JSON only that first error is kept. For the native syntax:
//
//   - A quote, bracket, brace, heredoc or interpolation that does not pair up is
//     reported once, where it was opened (a stray closer where it is), and no error
//     after the start of its top-level block is: from there on the file is read
//     inside it, so later errors follow from it. A stray closer after another syntax
//     error is taken to follow from that error, as a missing opener does.
//   - Otherwise each top-level block keeps its first syntax error.
//
// Errors in top-level blocks before the unbalanced one are kept: they are problems of
// their own. The decoder does not run on a file with syntax errors, so there are no
// semantic errors to collapse.
func collapseSyntax(filename string, src []byte, diags hcl.Diagnostics) hcl.Diagnostics {
	if isJSON(filename) {
		for i, d := range diags {
			if d.Severity == hcl.DiagError {
				return append(diags[:i:i], d) // warnings before it, in HCL's order
			}
		}
		return diags
	}
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	root, regions := balance(src, tokens)
	sortByPlace(diags)
	if root != nil && root.stray {
		// A closer too many usually means an opener is missing before it, and HCL
		// reports that where the opener should be: the closer follows from it.
		for _, d := range diags {
			if d.Severity == hcl.DiagError && d.Subject != nil && d.Subject.Start.Byte < root.diag.Subject.Start.Byte {
				root.diag = nil // errors from the closer's top-level item on are still dropped
				break
			}
		}
	}
	var out hcl.Diagnostics
	seen := map[int]bool{}
	for _, d := range diags {
		if d.Subject == nil || d.Severity != hcl.DiagError {
			out = append(out, d)
			continue
		}
		region := regions.at(d.Subject.Start.Byte)
		if root != nil && region >= root.region || seen[region] {
			continue
		}
		seen[region] = true
		out = append(out, d)
	}
	if root != nil && root.diag != nil {
		out = append(out, root.diag)
		sortByPlace(out)
	}
	if !out.HasErrors() && diags.HasErrors() {
		// Every error was taken to follow from another that was dropped too (a stray
		// closer in the item of the error it follows): the first one stays.
		for _, d := range diags {
			if d.Severity == hcl.DiagError {
				out = append(out, d)
				sortByPlace(out)
				break
			}
		}
	}
	return out
}

// regions are the byte offsets at which top-level items (blocks and attributes) end: a
// newline outside any bracket, brace or string.
type regions []int

// at is the index of the top-level item holding byte offset b.
func (r regions) at(b int) int { return sort.SearchInts(r, b+1) }

// unbalanced is the first quote, bracket, brace or interpolation that does not pair up.
type unbalanced struct {
	diag   *hcl.Diagnostic
	region int  // the top-level item it is in
	stray  bool // a closer with nothing to close
}

// opener is an open token with the top-level item it is in.
type opener struct {
	tok    hclsyntax.Token
	region int
}

// closes maps each closing token to the opening tokens it closes.
var closes = map[hclsyntax.TokenType][]hclsyntax.TokenType{
	hclsyntax.TokenCBrace:         {hclsyntax.TokenOBrace},
	hclsyntax.TokenCBrack:         {hclsyntax.TokenOBrack},
	hclsyntax.TokenCParen:         {hclsyntax.TokenOParen},
	hclsyntax.TokenCQuote:         {hclsyntax.TokenOQuote},
	hclsyntax.TokenCHeredoc:       {hclsyntax.TokenOHeredoc},
	hclsyntax.TokenTemplateSeqEnd: {hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl},
}

// balance pairs the openers and closers of tokens. It returns the first that does not
// pair up, if any, and where the top-level items before it end.
func balance(src []byte, tokens hclsyntax.Tokens) (*unbalanced, regions) {
	var stack []opener
	var ends regions
	var lastTop *hcl.Range               // the closing brace of the last top-level block
	var misindented [][2]hclsyntax.Token // braces closed by a "}" indented unlike their line
	fail := func(o opener, rng hcl.Range, summary, detail string, args ...any) (*unbalanced, regions) {
		return &unbalanced{region: o.region, diag: &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  summary,
			Detail:   fmt.Sprintf(detail, args...),
			Subject:  rng.Ptr(),
		}}, ends
	}
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen, hclsyntax.TokenOQuote,
			hclsyntax.TokenOHeredoc, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			stack = append(stack, opener{tok, len(ends)})
		case hclsyntax.TokenNewline:
			if len(stack) == 0 {
				ends = append(ends, tok.Range.Start.Byte)
			}
		case hclsyntax.TokenQuotedNewline:
			// The lexer carries a quoted string on to the next quote, so the string open
			// here is the one that lacks its closing quote, unless an interpolation in it
			// took that quote for the start of a string of its own.
			if len(stack) == 0 {
				continue
			}
			top := stack[len(stack)-1]
			if n := len(stack); n >= 2 && isInterp(stack[n-2].tok.Type) && stack[n-2].tok.Range.Start.Line == top.tok.Range.Start.Line {
				o := stack[n-2]
				return fail(o, o.tok.Range, "Unclosed template interpolation", "This %q has no closing \"}\" before the end of its string: write it like \"${var.name}\".", o.tok.Bytes)
			}
			return fail(top, lineFrom(src, top.tok.Range), "Unterminated string", "This string has no closing quote; strings end on the same line. For a multi-line value use a heredoc (<<EOF ... EOF).")
		case hclsyntax.TokenEOF:
			if len(stack) == 0 {
				return nil, ends
			}
			top := stack[len(stack)-1]
			switch top.tok.Type {
			case hclsyntax.TokenOQuote:
				return fail(top, lineFrom(src, top.tok.Range), "Unterminated string", "This string has no closing quote; strings end on the same line. For a multi-line value use a heredoc (<<EOF ... EOF).")
			case hclsyntax.TokenOHeredoc:
				marker := bytes.TrimSpace(bytes.TrimLeft(top.tok.Bytes, "<-"))
				return fail(top, lineFrom(src, top.tok.Range), "Unterminated heredoc", "This heredoc has no closing line: end it with a line holding only %s.", marker)
			case hclsyntax.TokenOBrace:
				// A brace missing inside a block takes the block's closing brace, and
				// leaves the block open: name the inner brace when indentation shows it.
				for _, m := range misindented {
					if o, c := m[0], m[1]; o.Range.Start.Byte > top.tok.Range.Start.Byte {
						return fail(top, o.Range, "Unclosed brace", "This \"{\" has no closing \"}\". The \"}\" at line %d closed it instead of the block that starts at line %d, which is left open at the end of the file.", c.Range.Start.Line, top.tok.Range.Start.Line)
					}
				}
			}
			return fail(top, top.tok.Range, "Unclosed "+bracketName(top.tok.Type), "This %q has no closing %q before the end of the file.", top.tok.Bytes, closerOf(top.tok.Type))
		}
		want, isCloser := closes[tok.Type]
		if !isCloser {
			continue
		}
		if len(stack) == 0 {
			detail := "There is no open %q for this %q to close."
			if lastTop != nil {
				detail += fmt.Sprintf(" The block before it already ended at line %d.", lastTop.Start.Line)
			}
			u, ends := fail(opener{tok, len(ends)}, tok.Range, fmt.Sprintf("Unexpected %q", tok.Bytes), detail, openerOf(tok.Type), tok.Bytes)
			u.stray = true
			return u, ends
		}
		top := stack[len(stack)-1]
		if !contains(want, top.tok.Type) {
			// Either the open one lacks its closer, or this closer is one too many: the
			// closer belongs to what is open around the open one.
			if len(stack) >= 2 && contains(want, stack[len(stack)-2].tok.Type) {
				outer := stack[len(stack)-2]
				return fail(top, top.tok.Range, "Unclosed "+bracketName(top.tok.Type), "This %q has no closing %q: the %q at line %d closes the %q at line %d first.", top.tok.Bytes, closerOf(top.tok.Type), tok.Bytes, tok.Range.Start.Line, outer.tok.Bytes, outer.tok.Range.Start.Line)
			}
			u, ends := fail(opener{tok, top.region}, tok.Range, fmt.Sprintf("Unexpected %q", tok.Bytes), "There is no open %q for this %q to close: the innermost open bracket is the %q at line %d.", openerOf(tok.Type), tok.Bytes, top.tok.Bytes, top.tok.Range.Start.Line)
			u.stray = true
			return u, ends
		}
		stack = stack[:len(stack)-1]
		if tok.Type == hclsyntax.TokenCBrace && startsLine(src, tok.Range.Start.Byte) && indent(src, tok.Range.Start.Byte) != indent(src, top.tok.Range.Start.Byte) {
			misindented = append(misindented, [2]hclsyntax.Token{top.tok, tok})
		}
		if len(stack) == 0 && tok.Type == hclsyntax.TokenCBrace {
			lastTop = tok.Range.Ptr()
		}
	}
	return nil, ends
}

func isInterp(t hclsyntax.TokenType) bool {
	return t == hclsyntax.TokenTemplateInterp || t == hclsyntax.TokenTemplateControl
}

func contains(ts []hclsyntax.TokenType, t hclsyntax.TokenType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

func bracketName(t hclsyntax.TokenType) string {
	switch t {
	case hclsyntax.TokenOBrace:
		return "brace"
	case hclsyntax.TokenOBrack:
		return "bracket"
	case hclsyntax.TokenOParen:
		return "parenthesis"
	case hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
		return "template interpolation"
	}
	return "string"
}

func closerOf(t hclsyntax.TokenType) string {
	switch t {
	case hclsyntax.TokenOBrack:
		return "]"
	case hclsyntax.TokenOParen:
		return ")"
	}
	return "}"
}

func openerOf(t hclsyntax.TokenType) string {
	switch t {
	case hclsyntax.TokenCBrack:
		return "["
	case hclsyntax.TokenCParen:
		return "("
	case hclsyntax.TokenTemplateSeqEnd:
		return "${"
	}
	return "{"
}

// lineFrom is rng extended to the end of its line: a string without its closing quote
// ends there.
func lineFrom(src []byte, rng hcl.Range) hcl.Range {
	end := len(src)
	if i := bytes.IndexByte(src[rng.Start.Byte:], '\n'); i >= 0 {
		end = rng.Start.Byte + i
	}
	if end > 0 && src[end-1] == '\r' {
		end--
	}
	rng.End = posAt(src, end)
	return rng
}

// startsLine reports whether only spaces and tabs come before offset b on its line.
func startsLine(src []byte, b int) bool {
	start := bytes.LastIndexByte(src[:b], '\n') + 1
	return len(bytes.Trim(src[start:b], " \t")) == 0
}

// indent is the leading whitespace of the line holding offset b.
func indent(src []byte, b int) string {
	start := bytes.LastIndexByte(src[:b], '\n') + 1
	end := start
	for end < len(src) && (src[end] == ' ' || src[end] == '\t') {
		end++
	}
	return string(src[start:end])
}

// sortByPlace orders diagnostics by where they are, those with no place first.
func sortByPlace(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}
