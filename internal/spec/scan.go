package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// frameKind is what the scanner is inside of.
type frameKind uint8

const (
	inCode    frameKind = iota // expressions and structure: the lexer's "main" machine
	inQuoted                   // a "quoted" template
	inHeredoc                  // a <<MARKER template
	inBare                     // a JSON string, which HCL parses as a template without quotes
)

// frame is one level of nesting.
type frame struct {
	kind frameKind
	// code: whether a newline ends an expression here (the top level and braces, where
	// it ends an attribute or an object item), and the operators since the last end.
	newlineEnds bool
	chain       int
	interp      bool // code: opened by ${ or %{, and closed by the lexer's rule for them
	// templates: open %{if} and %{for} directives, each one level of the parser's recursion.
	directives int
	// heredocs: the closing marker, and whether the scan is at the start of a line.
	marker      []byte
	startOfLine bool
}

// scanner measures nesting. For the native syntax it mirrors the state HCL's lexer keeps
// (scan_tokens.rl): a stack of machines, and the brace counter that decides whether a "}"
// closes a brace or ends a template interpolation.
type scanner struct {
	src      []byte
	filename string
	// file is the whole spec, base where src starts in it: a JSON string's content is
	// scanned on its own. When escapes moved offsets, fixed reports everything at base.
	file   []byte
	base   int
	fixed  bool
	frames []frame
	depth  int // levels open: frames beyond the first, plus open directives
	// braces and retBraces are the lexer's: braces counts open {, ${ and %{; retBraces
	// holds the counts at which a } ends an interpolation.
	braces    int
	retBraces []int
	// noFor rejects for expressions and %{for} directives. HCL parses a JSON string as a
	// template only when it evaluates it, so kiln cannot bound its iterations the way it
	// does for the native syntax (see forBudget).
	noFor bool
	diag  *hcl.Diagnostic
}

func (s *scanner) top() *frame { return &s.frames[len(s.frames)-1] }

func (s *scanner) fail(off int, summary, detail string) {
	if s.fixed {
		off = 0
	}
	if s.diag == nil {
		s.diag = limitDiag(s.filename, s.file, s.base+off, summary, detail)
	}
}

func (s *scanner) push(off int, f frame) {
	s.frames = append(s.frames, f)
	s.enter(off)
}

// enter counts one more level at off, failing past MaxNestingDepth.
func (s *scanner) enter(off int) {
	s.depth++
	if s.depth > MaxNestingDepth {
		s.fail(off, "Spec nested too deeply",
			fmt.Sprintf("Brackets, braces, parentheses, strings and template sequences nest more than %d levels deep here. kiln refuses specs nested deeper than %d levels: deeper nesting can exhaust the parser's stack.", MaxNestingDepth, MaxNestingDepth))
	}
}

func (s *scanner) pop() {
	f := s.top()
	s.depth -= 1 + f.directives
	s.frames = s.frames[:len(s.frames)-1]
}

// native scans HCL native syntax.
func (s *scanner) native() {
	s.frames = append(s.frames, frame{kind: inCode, newlineEnds: true})
	s.run(0)
}

// run scans s.src from i until the end or the first problem.
func (s *scanner) run(i int) {
	for i < len(s.src) && s.diag == nil {
		switch s.top().kind {
		case inCode:
			i = s.code(i)
		case inQuoted, inBare:
			i = s.template(i)
		case inHeredoc:
			i = s.heredoc(i)
		}
	}
}

// code scans one token of the lexer's main machine at i and returns where the next starts.
func (s *scanner) code(i int) int {
	src, f := s.src, s.top()
	c := src[i]
	next := byte(0)
	if i+1 < len(src) {
		next = src[i+1]
	}
	switch {
	case c == '#' || c == '/' && next == '/':
		if j := bytes.IndexByte(src[i:], '\n'); j >= 0 {
			return i + j // the newline is a token of its own
		}
		return len(src)
	case c == '/' && next == '*':
		// An unterminated /* is not a comment to the lexer but a "/" and a "*".
		if j := bytes.Index(src[i+2:], []byte("*/")); j >= 0 {
			return i + 2 + j + 2
		}
		s.chainOp(i)
		return i + 1
	case c == '\n':
		if f.newlineEnds {
			f.chain = 0
		}
		return i + 1
	case c == ',':
		f.chain = 0
		return i + 1
	case c == '"':
		s.push(i, frame{kind: inQuoted})
		return i + 1
	case c == '<' && next == '<':
		if j, marker := heredocStart(src, i); j > 0 {
			s.push(i, frame{kind: inHeredoc, marker: marker, startOfLine: true})
			return j
		}
		s.chainOp(i)
		return i + 1
	case c == '{':
		s.braces++
		s.push(i, frame{kind: inCode, newlineEnds: true})
		return i + 1
	case c == '[' || c == '(':
		if c == '[' {
			s.chainOp(i) // an index or splat: one more link of the chain it follows
		}
		s.push(i, frame{kind: inCode})
		return i + 1
	case c == '}' || c == '~' && next == '}':
		n := 1
		if c == '~' {
			n = 2
		}
		if len(s.retBraces) > 0 && s.retBraces[len(s.retBraces)-1] == s.braces {
			// The lexer ends the interpolation, whatever is still open inside it.
			s.braces--
			s.retBraces = s.retBraces[:len(s.retBraces)-1]
			for !s.top().interp {
				s.pop()
			}
			s.pop()
			return i + n
		}
		s.braces--
		s.closeBracket()
		return i + n
	case c == ']' || c == ')':
		s.closeBracket()
		return i + 1
	case c == '.':
		if i+2 < len(src) && next == '.' && src[i+2] == '.' {
			return i + 3
		}
		s.chainOp(i)
		return i + 1
	case c == '=':
		if next == '=' {
			s.chainOp(i)
			return i + 2
		}
		if next == '>' {
			return i + 2
		}
		return i + 1
	case c == '!' || c == '-' || c == '+' || c == '*' || c == '/' || c == '%' || c == '<' || c == '>' ||
		c == '&' || c == '|' || c == '?' || c == '^':
		s.chainOp(i)
		return i + 1
	case c >= '0' && c <= '9':
		j := i + 1
		for j < len(src) && (isDigit(src[j]) || src[j] == '.' || src[j] == 'e' || src[j] == 'E' ||
			(src[j] == '-' || src[j] == '+') && (src[j-1] == 'e' || src[j-1] == 'E')) {
			j++
		}
		return j
	case isIdentByte(c):
		j := i + 1
		for j < len(src) && (isIdentByte(src[j]) || isDigit(src[j]) || src[j] == '-') {
			j++
		}
		if s.noFor && j-i == 3 && string(src[i:j]) == "for" {
			s.failFor(i)
		}
		return j
	}
	return i + 1
}

// chainOp counts one more operator, index or attribute access in the current expression.
func (s *scanner) chainOp(off int) {
	f := s.top()
	f.chain++
	if f.chain > MaxChainLength {
		s.fail(off, "Expression too long",
			fmt.Sprintf("This expression chains more than %d operators, indexes and attribute accesses without brackets. kiln refuses longer chains: HCL evaluates them recursively.", MaxChainLength))
	}
}

// closeBracket pops a bracket, but never the frame of an interpolation or the top level,
// which only the lexer's own rules end.
func (s *scanner) closeBracket() {
	if f := s.top(); len(s.frames) > 1 && f.kind == inCode && !f.interp {
		s.pop()
	}
}

func (s *scanner) failFor(off int) {
	s.fail(off, "For expression not allowed",
		"A pipeline's spec in JSON form may not use for expressions or %{for} directives: kiln cannot bound how long they run. Write the spec in native syntax (kiln.hcl), or spell the values out.")
}

// heredocStart reports whether a heredoc introducer (<<MARKER or <<-MARKER, then a
// newline) starts at i, returning where its content starts and its marker.
func heredocStart(src []byte, i int) (int, []byte) {
	j := i + 2
	if j < len(src) && src[j] == '-' {
		j++
	}
	k := j
	for k < len(src) && (isIdentByte(src[k]) || isDigit(src[k]) || src[k] == '-' || src[k] >= utf8.RuneSelf) {
		k++
	}
	marker := src[j:k]
	switch {
	case k < len(src) && src[k] == '\n':
		k++
	case k+1 < len(src) && src[k] == '\r' && src[k+1] == '\n':
		k += 2
	default:
		return 0, nil
	}
	// The lexer's own identifier rule, Unicode tables and all.
	if len(marker) == 0 || !hclsyntax.ValidIdentifier(string(marker)) {
		return 0, nil
	}
	return k, marker
}

// template scans quoted or bare template text at i: literal text, escapes, the string's
// end, and the interpolations and directives that go back into code.
func (s *scanner) template(i int) int {
	src := s.src
	f := s.top()
	for ; i < len(src); i++ {
		switch c := src[i]; {
		case c == '"' && f.kind == inQuoted:
			s.pop()
			return i + 1
		case c == '\\' && f.kind == inQuoted:
			if i+1 < len(src) && src[i+1] != '\n' && src[i+1] != '\r' {
				i++
			}
		case c == '$' || c == '%':
			if j, ok := s.sequence(i); ok {
				return j
			} else if j > i {
				i = j - 1
			}
		}
	}
	return i
}

// heredoc scans heredoc text at i: like a quoted template without escapes or a closing
// quote, ended by a line that is only the marker.
func (s *scanner) heredoc(i int) int {
	src := s.src
	f := s.top()
	if f.startOfLine {
		end := bytes.IndexByte(src[i:], '\n')
		if end >= 0 && bytes.Equal(bytes.TrimSpace(src[i:i+end]), f.marker) {
			s.pop()
			return i + end // the newline belongs to the code again
		}
		f.startOfLine = false
	}
	for ; i < len(src); i++ {
		switch src[i] {
		case '\n':
			f.startOfLine = true
			return i + 1
		case '$', '%':
			if j, ok := s.sequence(i); ok {
				return j
			} else if j > i {
				i = j - 1
			}
		}
	}
	return i
}

// sequence handles a $ or % in template text at i. It returns true and where the code
// starts if it opens an interpolation or directive; otherwise false and where the
// literal text it is part of ends ($${ and %%{ are escapes).
func (s *scanner) sequence(i int) (int, bool) {
	src, c := s.src, s.src[i]
	switch {
	case i+1 < len(src) && src[i+1] == '{':
	case i+2 < len(src) && src[i+1] == c && src[i+2] == '{':
		return i + 3, false
	default:
		return i + 1, false
	}
	j := i + 2
	if j < len(src) && src[j] == '~' {
		j++
	}
	tmpl := s.top()
	if tmpl.kind == inHeredoc {
		tmpl.startOfLine = false
	}
	if c == '%' {
		k := j
		for k < len(src) && (src[k] == ' ' || src[k] == '\t') {
			k++
		}
		switch word := keywordAt(src, k); word {
		case "if", "for":
			if word == "for" && s.noFor {
				s.failFor(k)
			}
			tmpl.directives++
			s.enter(i)
		case "endif", "endfor":
			if tmpl.directives > 0 {
				tmpl.directives--
				s.depth--
			}
		}
	}
	s.braces++
	s.retBraces = append(s.retBraces, s.braces)
	s.push(i, frame{kind: inCode, interp: true})
	return j, true
}

// keywordAt is the identifier starting at i, if it is short enough to be a keyword.
func keywordAt(src []byte, i int) string {
	j := i
	for j < len(src) && j-i < 7 && isIdentByte(src[j]) {
		j++
	}
	return string(src[i:j])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

// json scans HCL's JSON syntax: objects and arrays nest, and every string may be parsed
// as a template when it is evaluated, so each is scanned as one too.
func (s *scanner) json() {
	src := s.src
	depth := 0
	for i := 0; i < len(src) && s.diag == nil; i++ {
		switch src[i] {
		case '{', '[':
			depth++
			if depth > MaxNestingDepth {
				s.fail(i, "Spec nested too deeply",
					fmt.Sprintf("Objects and arrays nest more than %d levels deep here. kiln refuses specs nested deeper than %d levels: deeper nesting can exhaust the parser's stack.", MaxNestingDepth, MaxNestingDepth))
			}
		case '}', ']':
			depth = max(depth-1, 0)
		case '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			end := min(j+1, len(src))
			s.jsonString(i, src[i:end], depth)
			i = end - 1
		}
	}
}

// jsonString scans the JSON string literal lit, at offset off, as a template nested
// depth levels deep.
func (s *scanner) jsonString(off int, lit []byte, depth int) {
	t := &scanner{src: lit[1:], filename: s.filename, file: s.file, base: off + 1, noFor: s.noFor, depth: depth}
	if len(lit) >= 2 && lit[len(lit)-1] == '"' {
		t.src = lit[1 : len(lit)-1]
		if bytes.IndexByte(t.src, '\\') >= 0 {
			var str string
			if json.Unmarshal(lit, &str) != nil {
				return // not a valid string: the parser reports it
			}
			t.src, t.base, t.fixed = []byte(str), off, true
		}
	}
	t.frames = []frame{{kind: inBare}}
	t.run(0)
	if t.diag != nil {
		s.diag = t.diag
	}
}
