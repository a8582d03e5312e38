package spec

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/hashicorp/hcl/v2"
)

// WriteText renders diagnostics for people: each with its location, a source snippet
// with the problem underlined, and the detail.
func WriteText(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, width uint, color bool) error {
	return hcl.NewDiagnosticTextWriter(w, files, width, color).WriteDiagnostics(diags)
}

// ValidateResult is the JSON document of `kiln validate -json`, in the shape of
// `terraform validate -json` so tools that read one can read the other.
type ValidateResult struct {
	FormatVersion string           `json:"format_version"`
	Valid         bool             `json:"valid"`
	ErrorCount    int              `json:"error_count"`
	WarningCount  int              `json:"warning_count"`
	Diagnostics   []JSONDiagnostic `json:"diagnostics"`
}

// JSONDiagnostic is one diagnostic in the shape Terraform uses.
type JSONDiagnostic struct {
	Severity string       `json:"severity"`
	Summary  string       `json:"summary"`
	Detail   string       `json:"detail"`
	Range    *JSONRange   `json:"range,omitempty"`
	Snippet  *JSONSnippet `json:"snippet,omitempty"`
}

type JSONRange struct {
	Filename string  `json:"filename"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

type JSONSnippet struct {
	Context              *string `json:"context"`
	Code                 string  `json:"code"`
	StartLine            int     `json:"start_line"`
	HighlightStartOffset int     `json:"highlight_start_offset"`
	HighlightEndOffset   int     `json:"highlight_end_offset"`
	Values               []any   `json:"values"`
}

// NewValidateResult converts diagnostics into the JSON document.
func NewValidateResult(files map[string]*hcl.File, diags hcl.Diagnostics) ValidateResult {
	r := ValidateResult{FormatVersion: "1.0", Diagnostics: []JSONDiagnostic{}}
	for _, d := range diags {
		jd := JSONDiagnostic{Summary: d.Summary, Detail: d.Detail, Severity: "error"}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
			r.WarningCount++
		} else {
			r.ErrorCount++
		}
		if d.Subject != nil {
			s := *d.Subject
			jd.Range = &JSONRange{
				Filename: s.Filename,
				Start:    JSONPos{Line: s.Start.Line, Column: s.Start.Column, Byte: s.Start.Byte},
				End:      JSONPos{Line: s.End.Line, Column: s.End.Column, Byte: s.End.Byte},
			}
			jd.Snippet = snippet(files[s.Filename], s)
		}
		r.Diagnostics = append(r.Diagnostics, jd)
	}
	r.Valid = r.ErrorCount == 0
	return r
}

// WriteJSON writes the JSON document of diagnostics.
func WriteJSON(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NewValidateResult(files, diags))
}

// snippet returns the whole source lines rng covers, with the highlight's offsets
// into them.
func snippet(f *hcl.File, rng hcl.Range) *JSONSnippet {
	if f == nil || rng.Start.Byte > len(f.Bytes) || rng.End.Byte > len(f.Bytes) {
		return nil
	}
	src := f.Bytes
	start := bytes.LastIndexByte(src[:rng.Start.Byte], '\n') + 1
	end := len(src)
	if i := bytes.IndexByte(src[rng.End.Byte:], '\n'); i >= 0 {
		end = rng.End.Byte + i
	}
	if rng.End.Byte > rng.Start.Byte && src[rng.End.Byte-1] == '\n' {
		end = rng.End.Byte - 1
	}
	s := &JSONSnippet{
		Code:                 string(src[start:end]),
		StartLine:            rng.Start.Line,
		HighlightStartOffset: rng.Start.Byte - start,
		HighlightEndOffset:   min(rng.End.Byte-start, end-start),
		Values:               []any{},
	}
	if nav, ok := f.Nav.(interface{ ContextString(int) string }); ok {
		if c := nav.ContextString(rng.Start.Byte); c != "" {
			s.Context = &c
		}
	}
	return s
}
