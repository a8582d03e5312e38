package spec

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Limits on what a spec may ask of the parser. A pipeline parses the spec of every commit
// it watches, so a spec is input from whoever can push; these bound the memory, stack and
// time one spec can take. They are far above what a real spec needs.
const (
	// MaxSourceBytes is the largest spec file kiln parses.
	MaxSourceBytes = 1 << 20
	// MaxNestingDepth is how deeply brackets, braces, parentheses, strings, heredocs,
	// template interpolations and %{if}/%{for} directives may nest. HCL's parser recurses
	// once per level, and deep enough nesting overflows its goroutine's stack.
	MaxNestingDepth = 64
	// MaxChainLength is how many operators, indexes and attribute accesses one expression
	// may chain at one nesting level: HCL builds and evaluates such a chain recursively.
	MaxChainLength = 256
	// MaxFileBytes is the largest file file() reads, and the longest string or
	// collection a function may return.
	MaxFileBytes = 1 << 20
	// MaxCollectionLength is the most elements a function may return in a list, map,
	// set, tuple or object. With MaxFileBytes, it stops a spec from doubling a value
	// until the daemon runs out of memory (replace(replace(...)), concat(x, x)).
	MaxCollectionLength = 1 << 16
	// MaxForWork bounds the work of all for expressions of one spec together: each
	// iteration counts one, plus the size of the value it produces (see forBudget).
	MaxForWork = 1 << 18
)

// readSource reads a spec file, refusing to read much past MaxSourceBytes: checkLimits
// reports the size, and the rest of the file is never needed.
func readSource(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxSourceBytes+1))
}

// checkLimits reports a spec that is too large or nested too deeply, before any parser
// sees it. The scan is linear and allocates only a stack bounded by MaxNestingDepth; it
// follows HCL's lexer on where strings, comments and heredocs begin and end, so what
// looks like text to the scan is text to the parser too.
func checkLimits(filename string, src []byte, confine bool) hcl.Diagnostics {
	if len(src) > MaxSourceBytes {
		return hcl.Diagnostics{limitDiag(filename, src, MaxSourceBytes, "Spec file too large",
			fmt.Sprintf("The spec is larger than %d bytes (1 MiB), the most kiln reads. It passes that size here.", MaxSourceBytes))}
	}
	s := &scanner{src: src, file: src, filename: filename, noFor: confine && isJSON(filename)}
	if isJSON(filename) {
		s.json()
	} else {
		s.native()
	}
	if s.diag != nil {
		return hcl.Diagnostics{s.diag}
	}
	return nil
}

func isJSON(filename string) bool { return len(filename) > 5 && filename[len(filename)-5:] == ".json" }

// limitDiag is an error at byte offset off of src.
func limitDiag(filename string, src []byte, off int, summary, detail string) *hcl.Diagnostic {
	start := posAt(src, off)
	end := start
	if off < len(src) {
		_, n := utf8.DecodeRune(src[off:])
		end = hcl.Pos{Line: start.Line, Column: start.Column + 1, Byte: off + n}
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  &hcl.Range{Filename: filename, Start: start, End: end},
	}
}

// posAt is the line and column (in characters, as HCL counts them) of byte offset off.
func posAt(src []byte, off int) hcl.Pos {
	off = min(off, len(src))
	line := 1 + bytes.Count(src[:off], []byte{'\n'})
	lineStart := bytes.LastIndexByte(src[:off], '\n') + 1
	return hcl.Pos{Line: line, Column: 1 + utf8.RuneCount(src[lineStart:off]), Byte: off}
}
