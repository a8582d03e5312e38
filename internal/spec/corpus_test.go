package spec

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// malformed is one generated bad spec.
type malformed struct {
	name string // the mutation, for failures
	file string // kiln.hcl or kiln.hcl.json
	src  []byte
}

// malformedCorpus derives bad specs from the valid ones in testdata, deterministically:
// each mutation is chosen so that no spec it yields is valid.
func malformedCorpus(t *testing.T) []malformed {
	t.Helper()
	var out []malformed
	seen := map[string]bool{}
	add := func(file, name string, src []byte) {
		if !seen[file+string(src)] {
			seen[file+string(src)] = true
			out = append(out, malformed{name, file, src})
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	native, err := os.ReadFile("testdata/valid/kiln.hcl")
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile("testdata/valid/kiln.hcl.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []struct {
		file string
		src  []byte
	}{{"kiln.hcl", native}, {"kiln.hcl.json", js}} {
		src, file := base.src, base.file
		splice := func(at, drop int, insert string) []byte {
			return append(append(append([]byte{}, src[:at]...), insert...), src[at+drop:]...)
		}
		// Truncations that leave a block, bracket or string open.
		for range 80 {
			at := rnd.IntN(len(src))
			if openAt(file, src[:at]) {
				add(file, fmt.Sprintf("truncated at %d", at), src[:at])
			}
		}
		// Structural braces deleted or doubled, and quotes deleted or doubled: either
		// leaves something unbalanced.
		inString := jsonStrings(src)
		for i, c := range src {
			switch {
			case file == "kiln.hcl.json" && inString[i] && c != '"':
				// a brace in a string: removing it can leave a valid template
			case c == '{' && (file != "kiln.hcl" || i+1 < len(src) && src[i+1] == '\n'),
				c == '}' && (file != "kiln.hcl" || i == 0 || src[i-1] == '\n' || src[i-1] == ' '),
				c == '[' && file != "kiln.hcl", c == ']' && file != "kiln.hcl":
				add(file, fmt.Sprintf("%c deleted at %d", c, i), splice(i, 1, ""))
				add(file, fmt.Sprintf("%c doubled at %d", c, i), splice(i, 0, string(c)))
			case c == '"':
				add(file, fmt.Sprintf("quote deleted at %d", i), splice(i, 1, ""))
				add(file, fmt.Sprintf("quote doubled at %d", i), splice(i, 0, `"`))
			}
		}
		// NUL bytes and invalid UTF-8 at the start of lines, where they are code.
		lines := lineStarts(src)
		for _, at := range lines {
			if file == "kiln.hcl.json" {
				at = firstNonSpace(src, at)
			}
			add(file, fmt.Sprintf("NUL at %d", at), splice(at, 0, "\x00"))
			add(file, fmt.Sprintf("bad UTF-8 at %d", at), splice(at, 0, "\xff\xfe"))
		}
		// Nesting past the limit, and a file past the size limit.
		add(file, "deep nesting", splice(bytes.IndexByte(src, '{')+1, 0, strings.Repeat("[", 2*MaxNestingDepth)))
		add(file, "too large", append(append([]byte{}, src...), bytes.Repeat([]byte(" "), MaxSourceBytes)...))
	}

	// Native syntax: unknown blocks and attributes inside every block, and bad values for
	// every attribute.
	src := native
	for _, at := range regexp.MustCompile(`\{\n`).FindAllIndex(src, -1) {
		i := at[1]
		for _, ins := range []string{"bogus {\n}\n", "bogus \"x\" {\n}\n", "bogus_attribute = 1\n", "image \"nested\" {\n  from = \"scratch\"\n}\n"} {
			add("kiln.hcl", "inserted "+strings.Fields(ins)[0], append(append(append([]byte{}, src[:i]...), ins...), src[i:]...))
		}
	}
	values := []string{
		"[[1]]", `{ a = { b = 1 } }`, // wrong types for every attribute
		"var.nope", "image.nope", "local.nope", "nope.x", `nope("x")`, "var.version.x", // bad references
		"1e400", "-99999999999999999999999999", // huge numbers
		"[" + strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100) + "]", // deep nesting
		`"${`, "<<EOT\n", "1 +", "(1", "[1,", `"a" "b"`, "=", "", // broken expressions
		`file("../secret")`, `file("/etc/passwd")`, `file("nope.txt")`, // files outside or missing
	}
	numeric := map[string]bool{"replicas": true, "port": true, "pids": true, "healthy_threshold": true, "cpu": true}
	for _, m := range regexp.MustCompile(`(?m)^ *(\w+) *= *(.+)$`).FindAllSubmatchIndex(src, -1) {
		name := string(src[m[2]:m[3]])
		for _, v := range values {
			switch {
			case name == "default" && (v == "[[1]]" || v == `{ a = { b = 1 } }`):
				continue // an untyped variable takes any value; its uses may not break
			case (v == "1e400" || strings.HasPrefix(v, "-9")) && !numeric[name]:
				continue // a number is a fine string
			}
			add("kiln.hcl", name+" = "+v, append(append(append([]byte{}, src[:m[4]]...), v...), src[m[5]:]...))
		}
	}
	return out
}

// openAt reports whether the truncated spec src leaves a block, bracket or string open.
func openAt(file string, src []byte) bool {
	s := &scanner{src: src, file: src, filename: file}
	if isJSON(file) {
		depth := 0
		for _, c := range src { // the valid JSON spec has no brackets in strings
			switch c {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
		return depth > 0
	}
	s.native()
	return s.diag == nil && len(s.frames) > 1
}

// jsonStrings marks the bytes of src inside JSON strings, quotes included.
func jsonStrings(src []byte) []bool {
	in := make([]bool, len(src))
	inside := false
	for i := 0; i < len(src); i++ {
		if src[i] == '"' {
			inside = !inside
			in[i] = true
			continue
		}
		in[i] = inside
		if inside && src[i] == '\\' && i+1 < len(src) {
			i++
			in[i] = true
		}
	}
	return in
}

func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' && i+1 < len(src) {
			starts = append(starts, i+1)
		}
	}
	return starts
}

func firstNonSpace(src []byte, i int) int {
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	return i
}

// TestMalformedCorpus parses every generated bad spec as a pipeline would: each must be
// refused with errors, each error with a file and line, and none may panic.
func TestMalformedCorpus(t *testing.T) {
	corpus := malformedCorpus(t)
	if len(corpus) < 500 {
		t.Fatalf("only %d malformed specs", len(corpus))
	}
	opts := fuzzOpts(t)
	for _, file := range []string{"kiln.hcl", "kiln.hcl.json"} {
		src, _ := os.ReadFile("testdata/valid/" + file)
		if _, diags := Parse(file, src, opts); diags.HasErrors() {
			t.Fatalf("the base %s does not parse: %v", file, diags)
		}
	}
	start := time.Now()
	for _, m := range corpus {
		_, diags := Parse(m.file, m.src, opts)
		if !diags.HasErrors() {
			t.Errorf("%s: %s was accepted", m.file, m.name)
			continue
		}
		checkPlaces(t, m.src, diags)
	}
	t.Logf("%d malformed specs refused in %v", len(corpus), time.Since(start))
}
