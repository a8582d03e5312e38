package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// attr is a spec with one image whose user attribute is expr.
func attr(expr string) string {
	return "image \"a\" {\n  from = \"scratch\"\n  user = " + expr + "\n}\n"
}

// TestLimits checks that hostile sources are refused before the parser sees them, fast,
// with an error at the place the limit was passed. Without the pre-scan, the deepest of
// these overflow the parser's stack and kill the process.
func TestLimits(t *testing.T) {
	tests := []struct {
		name, file, src string
		summary         string
		line            int
	}{
		{"too large", "kiln.hcl", "# " + strings.Repeat("x", MaxSourceBytes) + "\n", "Spec file too large", 1},
		{"brackets", "kiln.hcl", attr(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)), "Spec nested too deeply", 3},
		{"braces", "kiln.hcl", strings.Repeat("a {\n", 100000), "Spec nested too deeply", MaxNestingDepth + 1},
		{"parentheses", "kiln.hcl", attr(strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000)), "Spec nested too deeply", 3},
		{"interpolations", "kiln.hcl", attr(strings.Repeat(`"${`, 40000) + strings.Repeat(`}"`, 40000)), "Spec nested too deeply", 3},
		{"heredocs", "kiln.hcl", attr(strings.Repeat("<<EOT\n${", 10000)), "Spec nested too deeply", 35},
		{"directives", "kiln.hcl", attr(`"` + strings.Repeat("%{if true}", 50000) + strings.Repeat("%{endif}", 50000) + `"`), "Spec nested too deeply", 3},
		{"unary operators", "kiln.hcl", attr(strings.Repeat("!", 500000) + "true"), "Expression too long", 3},
		{"binary operators", "kiln.hcl", attr("1" + strings.Repeat("+1", 400000)), "Expression too long", 3},
		{"binary operators over lines", "kiln.hcl", attr("(1" + strings.Repeat("\n+1", 300000) + ")"), "Expression too long", 3 + MaxChainLength + 1},
		{"splats", "kiln.hcl", attr("[1]" + strings.Repeat("[*]", 300000)), "Expression too long", 3},
		{"conditionals", "kiln.hcl", attr(strings.Repeat("true ? 1 : ", 80000) + "1"), "Expression too long", 3},
		{"json arrays", "kiln.hcl.json", `{"image": {"a": {"from": "scratch", "user": ` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}}}`, "Spec nested too deeply", 1},
		{"json template", "kiln.hcl.json", `{"image": {"a": {"from": "scratch", "user": "` + strings.Repeat("${", 50000) + `"}}}`, "Spec nested too deeply", 1},
		{"json escaped template", "kiln.hcl.json", `{"image": {"a": {"from": "scratch", "user": "` + strings.Repeat(`\u0024{`, 50000) + `"}}}`, "Spec nested too deeply", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, diags := Parse(tt.file, []byte(tt.src), testOpts)
			if elapsed := time.Since(start); elapsed > 5*time.Second { // generous: a loaded machine, -race
				t.Errorf("took %v", elapsed)
			}
			if len(diags) != 1 || diags[0].Summary != tt.summary {
				t.Fatalf("got %v, want one %q", diags, tt.summary)
			}
			d := diags[0]
			if d.Subject == nil || d.Subject.Filename != tt.file || d.Subject.Start.Line != tt.line {
				t.Errorf("subject %v, want %s line %d", d.Subject, tt.file, tt.line)
			}
			if !strings.Contains(d.Detail, "kiln") {
				t.Errorf("detail does not state the limit: %s", d.Detail)
			}
		})
	}
}

// TestLimitsNotFooled checks that brackets in strings, comments and heredocs are not
// counted, and that text which only looks like a string or comment is.
func TestLimitsNotFooled(t *testing.T) {
	deep := strings.Repeat("[", 2*MaxNestingDepth)
	ok := []string{
		attr(`"` + deep + `"`),
		attr(`"\"` + deep + `"`),
		attr(`"$${` + deep + `"`),
		attr(`"%%{` + deep + `"`),
		"# " + deep + "\n" + attr("1"),
		"// " + deep + "\n" + attr("1"),
		"/* " + deep + " */\n" + attr("1"),
		attr("<<EOT\n" + deep + "\n\"\nEOT\n"),
		attr("<<-EOT\n  " + deep + "\n  EOT\n"),
		attr(`"` + strings.Repeat("${1}", 1000) + `"`),
		attr(strings.Repeat("[", MaxNestingDepth-3) + strings.Repeat("]", MaxNestingDepth-3)),
		attr(strings.Repeat("1 + ", MaxChainLength-1) + "1"),
		strings.Repeat("image \"a\" {\n  from = \"scratch\"\n  user = 1 + 1 + 1\n}\n", 1000),
	}
	for i, src := range ok {
		if diags := checkLimits("kiln.hcl", []byte(src), false); diags.HasErrors() {
			t.Errorf("%d: %v", i, diags)
		}
		if d := lexDepth([]byte(src)); d > MaxNestingDepth {
			t.Errorf("%d: the lexer finds depth %d: the test is wrong", i, d)
		}
	}
	refused := []string{
		attr(`"${` + deep + `}"`),                 // code inside a string's interpolation
		attr(`"\\"` + deep),                       // the escape is a backslash: the string ends
		"/* " + deep,                              // not a comment: never closed
		attr("<<EOT \n" + deep),                   // not a heredoc: a space before the newline
		attr("<<EOT\n" + deep + "\nEOT\n" + deep), // after the heredoc
		attr("<<EOT\n${" + deep + "}\nEOT\n"),     // a heredoc's interpolation
		attr("<<EOT\n  EOT x\n" + "EOT\n" + deep), // "EOT x" does not end it, but EOT does
		attr(`"${"}"` + deep + `"}"`),             // the "}" is in a string inside the interpolation
		attr(`"${ { }` + deep),                    // the brace pair leaves the interpolation open
		attr(`"${ # }"` + "\n" + deep),            // the comment hides "}" from the interpolation
		`{"a": "` + strings.Repeat(`\"${`, 200),   // json: escaped quotes do not end the string
	}
	for i, src := range refused {
		name := "kiln.hcl"
		if strings.HasPrefix(src, "{") {
			name = "kiln.hcl.json"
		}
		if diags := checkLimits(name, []byte(src), false); !diags.HasErrors() {
			t.Errorf("%d: not refused: %.80q", i, src)
		}
		if d := lexDepth([]byte(src)); name == "kiln.hcl" && d <= MaxNestingDepth {
			t.Errorf("%d: the lexer finds depth %d only: the test is wrong", i, d)
		}
	}
}

// lexDepth is the nesting the real lexer finds in src: the most tokens open at once
// that the scan counts. The fuzz test checks the scan never counts fewer.
func lexDepth(src []byte) int {
	tokens, _ := hclsyntax.LexConfig(src, "kiln.hcl", hcl.InitialPos)
	depth, deepest := 0, 0
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen, hclsyntax.TokenOQuote,
			hclsyntax.TokenOHeredoc, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			depth++
			deepest = max(deepest, depth)
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenCQuote,
			hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			depth = max(depth-1, 0)
		}
	}
	return deepest
}

func TestLexDepthAgrees(t *testing.T) {
	for n := 1; n < 2*MaxNestingDepth; n += 7 {
		src := []byte(attr(strings.Repeat(`["${`, n) + strings.Repeat(`}"]`, n)))
		got := lexDepth(src)
		refused := checkLimits("kiln.hcl", src, false).HasErrors()
		if refused != (got > MaxNestingDepth) {
			t.Errorf("n=%d: lexer depth %d, refused %v", n, got, refused)
		}
	}
}
