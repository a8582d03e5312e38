package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
)

// fuzzOpts parses as a pipeline does: confined to a checkout, testdata/valid.
func fuzzOpts(t testing.TB) Options {
	dir, err := filepath.Abs("testdata/valid")
	if err != nil {
		t.Fatal(err)
	}
	return Options{Environ: []string{}, DefaultArch: "amd64", Dir: dir, Confine: true}
}

func addSeeds(f *testing.F, patterns ...string) {
	for _, pattern := range patterns {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			src, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
}

// checkPlaces fails t for an error diagnostic without a file and line. Parse documents
// the few that have none, and none of those can arise from the source alone.
func checkPlaces(t testing.TB, src []byte, diags hcl.Diagnostics) {
	t.Helper()
	for _, d := range diags.Errs() {
		d := d.(*hcl.Diagnostic)
		if d.Subject == nil || d.Subject.Filename == "" || d.Subject.Start.Line < 1 {
			t.Errorf("error without a place: %s: %s\nsource: %.200q", d.Summary, d.Detail, src)
		}
	}
}

// slowParse is how long Parse may take before fuzzing calls it pathological: far more
// than any input of the limited size needs, even on a loaded machine.
const slowParse = 3 * time.Second

// FuzzParse checks, for any native-syntax source, that Parse does not panic, that its
// errors have places, that the limit pre-scan counts at least the nesting HCL's lexer
// finds, and that a spec which parses cleanly means the same after `kiln fmt`, which
// formats it to a fixed point.
func FuzzParse(f *testing.F) {
	addSeeds(f, "testdata/valid/*.hcl", "testdata/diags/*.hcl")
	opts := fuzzOpts(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		start := time.Now()
		// A Parse that never returns would stall the fuzzer without naming its input:
		// crash the worker instead, so the input is saved.
		hang := time.AfterFunc(4*slowParse, func() { panic(fmt.Sprintf("Parse hangs: %.300q", src)) })
		cfg, diags := Parse("kiln.hcl", src, opts)
		hang.Stop()
		if elapsed := time.Since(start); elapsed > slowParse {
			t.Fatalf("Parse took %v: %.300q", elapsed, src)
		}
		checkPlaces(t, src, diags)
		if len(src) <= MaxSourceBytes && lexDepth(src) > MaxNestingDepth && !checkLimits("kiln.hcl", src, true).HasErrors() {
			t.Fatalf("the lexer finds depth %d, the pre-scan lets it through: %.200q", lexDepth(src), src)
		}
		if diags.HasErrors() {
			return
		}
		formatted, fdiags := Format("kiln.hcl", src)
		if fdiags.HasErrors() {
			t.Fatalf("a spec that parses does not format: %v", fdiags)
		}
		again, _ := Format("kiln.hcl", formatted)
		if !bytes.Equal(again, formatted) {
			t.Fatalf("formatting is not idempotent:\n%s\n----\n%s", formatted, again)
		}
		cfg2, diags2 := Parse("kiln.hcl", formatted, opts)
		if diags2.HasErrors() {
			t.Fatalf("the formatted spec does not parse: %v\n%s", diags2, formatted)
		}
		if diff := cmp.Diff(cfg, cfg2, cmpopts.IgnoreTypes(hcl.Range{}), cmpopts.IgnoreFields(Config{}, "Files")); diff != "" {
			t.Fatalf("formatting changed the spec (-before +after):\n%s\nsource: %q\nformatted: %q", diff, src, formatted)
		}
	})
}

// FuzzParseJSON checks the JSON form: no panic, and errors with places.
func FuzzParseJSON(f *testing.F) {
	addSeeds(f, "testdata/valid/*.json")
	opts := fuzzOpts(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		_, diags := Parse("kiln.hcl.json", src, opts)
		checkPlaces(t, src, diags)
	})
}
