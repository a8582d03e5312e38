package spec

import (
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclparse"
)

// TestSyntaxErrorCascades checks that one slip gives one error, at the slip, however
// many HCL's parser reports after it.
func TestSyntaxErrorCascades(t *testing.T) {
	const tail = "\nservice \"web\" {\n  image = image.web\n  port  = 8080\n}\n"
	tests := []struct {
		name, src string
		want      []string // summary@line of each error
	}{
		{"unterminated string", "image \"web\" {\n  from = \"scratch\"\n\n  file \"/etc/motd\" {\n    content = \"Hello\n    mode    = \"0644\"\n  }\n\n  user = \"1:1\"\n}\n" + tail,
			[]string{"Unterminated string@5"}},
		{"unterminated string at the end", "image \"web\" {\n  from = \"scratch\n}\n",
			[]string{"Unterminated string@2"}},
		{"doubled quote", "image \"web\" {\n  from = \"scratch\"\"\n  user = \"1:1\"\n}\n" + tail,
			[]string{"Unterminated string@2"}},
		{"quote in a function call", "image \"web\" {\n  from = \"scratch\"\n  cmd  = [upper(\"a)]\n}\n" + tail,
			[]string{"Unterminated string@3"}},
		{"unclosed interpolation", "image \"web\" {\n  from = \"scratch\"\n  user = \"${var.x\"\n}\n" + tail,
			[]string{"Unclosed template interpolation@3"}},
		{"unclosed bracket", "image \"web\" {\n  from = \"scratch\"\n  cmd  = [\"a\", \"b\"\n  user = \"1:1\"\n}\n" + tail,
			[]string{"Unclosed bracket@3"}},
		{"unclosed parenthesis", "image \"web\" {\n  from = \"scratch\"\n  user = upper(\"a\"\n  cmd  = [\"x\"]\n}\n" + tail,
			[]string{"Unclosed parenthesis@3"}},
		{"parenthesis closed by a bracket", "image \"web\" {\n  from = \"scratch\"\n  cmd = [\"a\", (\"b\"]\n}\n",
			[]string{"Unclosed parenthesis@3"}},
		{"unclosed block", "image \"web\" {\n  from = \"scratch\"\n\nservice \"web\" {\n  image = image.web\n}\n",
			[]string{"Unclosed brace@1"}},
		{"unclosed object in a block", "image \"web\" {\n  from = \"scratch\"\n  env = {\n    A = \"b\"\n  user = \"1:1\"\n}\n" + tail,
			[]string{"Unclosed brace@3"}},
		{"unterminated heredoc", "image \"web\" {\n  from = \"scratch\"\n  file \"/x\" {\n    content = <<EOT\nhello\n  }\n}\n" + tail,
			[]string{"Unterminated heredoc@4"}},
		{"stray brace", "image \"web\" {\n  from = \"scratch\"\n}\n}\n" + tail,
			[]string{`Unexpected "}"@4`}},
		{"missing brace", "image \"web\"\n  from = \"scratch\"\n}\n" + tail,
			[]string{"Invalid block definition@1"}},
		{"two problems in one block", "image \"web\" {\n  from = \"scratch\" \"x\"\n  user = = 1\n}\n" + tail,
			[]string{"Missing newline after argument@2"}},
		{"problems in two blocks", "image \"web\" {\n  from = \"a\" & \"b\"\n  user = 1 & 2\n}\n\nimage \"api\" {\n  from = \"a\" & \"b\"\n}\n",
			[]string{"Unsupported operator@2", "Unsupported operator@7"}},
		{"a problem before an unbalanced quote", "image \"web\" {\n  from = = 1\n}\n\nimage \"api\" {\n  from = \"scratch\n}\n" + tail,
			[]string{"Invalid expression@2", "Unterminated string@6"}},
		{"JSON", "{\n  \"image\": {\n    \"web\": {\n      \"from\": \"scratch\n    }\n  }\n}\n",
			[]string{"Invalid JSON string@4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := "kiln.hcl"
			if tt.name == "JSON" {
				file += ".json"
			}
			_, diags := Parse(file, []byte(tt.src), testOpts)
			var got []string
			for _, d := range diags {
				got = append(got, d.Summary+"@"+itoa(d.Subject.Start.Line))
			}
			if strings.Join(got, ", ") != strings.Join(tt.want, ", ") {
				t.Errorf("got %v, want %v:\n%v", got, tt.want, diags)
			}
		})
	}
}

// TestOneErrorPerSlip parses every malformed spec of the corpus that HCL cannot parse:
// each has one mutation, so each must get exactly one error.
func TestOneErrorPerSlip(t *testing.T) {
	n := 0
	for _, m := range malformedCorpus(t) {
		p := hclparse.NewParser()
		var err bool
		if isJSON(m.file) {
			_, d := p.ParseJSON(m.src, m.file)
			err = d.HasErrors()
		} else {
			_, d := p.ParseHCL(m.src, m.file)
			err = d.HasErrors()
		}
		if !err || len(m.src) > MaxSourceBytes {
			continue
		}
		n++
		if _, diags := Parse(m.file, m.src, testOpts); len(diags) != 1 {
			t.Errorf("%s: %s: got %d diagnostics, want 1: %v", m.file, m.name, len(diags), diags)
		}
	}
	if n < 100 {
		t.Fatalf("only %d specs with syntax errors", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
