package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	if wd, err := os.Getwd(); err == nil { // diagnostics name absolute paths; clones differ
		got = bytes.ReplaceAll(got, []byte(wd), []byte("$PKG"))
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got), run go test -update if the change is intended:\n%s", path, diff)
	}
}

var testOpts = Options{Environ: []string{}, DefaultArch: "amd64"}

// TestDiagnostics renders the diagnostics of each spec in testdata/diags as text and as
// JSON, and compares both with golden files.
func TestDiagnostics(t *testing.T) {
	files, _ := filepath.Glob("testdata/diags/*.hcl")
	if len(files) == 0 {
		t.Fatal("no test specs")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".hcl")
		t.Run(name, func(t *testing.T) {
			cfg, diags := Load(f, testOpts)
			if !diags.HasErrors() {
				t.Fatalf("%s: expected errors, got none", f)
			}
			var text bytes.Buffer
			if err := WriteText(&text, cfg.Files, diags, 0, false); err != nil {
				t.Fatal(err)
			}
			golden(t, "diags/"+name+".txt.golden", text.Bytes())
			var js bytes.Buffer
			if err := WriteJSON(&js, cfg.Files, diags); err != nil {
				t.Fatal(err)
			}
			golden(t, "diags/"+name+".json.golden", js.Bytes())
		})
	}
}

// TestEveryProblemAtOnce checks that one run reports all problems of a spec, each with
// a line and column.
func TestEveryProblemAtOnce(t *testing.T) {
	_, diags := Load("testdata/diags/wrong_type.hcl", testOpts)
	if n := len(diags.Errs()); n < 6 {
		t.Fatalf("got %d errors, want at least 6 (one per bad attribute): %v", n, diags)
	}
	for _, d := range diags {
		if d.Subject == nil || d.Subject.Start.Line == 0 {
			t.Errorf("diagnostic %q has no location", d.Summary)
		}
	}
}

// dump renders a decoded config as stable JSON, with the machine-specific directory
// replaced.
func dump(t *testing.T, cfg *Config) []byte {
	t.Helper()
	type step struct {
		Kind string
		Step Step
	}
	type image struct {
		*Image
		Steps []step
	}
	out := struct {
		Variables map[string]string
		Images    []image
		Services  []*Service
	}{Variables: cfg.Variables, Services: cfg.Services}
	for _, img := range cfg.Images {
		var steps []step
		for _, s := range img.Steps {
			steps = append(steps, step{typeName(s), s})
		}
		out.Images = append(out.Images, image{img, steps})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func typeName(s Step) string {
	switch s.(type) {
	case *Run:
		return "run"
	case *CopyFrom:
		return "copy-from"
	case *GoBuild:
		return "go"
	case *Copy:
		return "copy"
	case *File:
		return "file"
	case *Debian:
		return "debian"
	}
	return "?"
}

func TestValidSpec(t *testing.T) {
	cfg, diags := Load("testdata/valid/kiln.hcl", testOpts)
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics: %v", diags)
	}
	golden(t, "valid/kiln.hcl.golden", dump(t, cfg))
}

func TestJSONSyntax(t *testing.T) {
	cfg, diags := Load("testdata/valid/kiln.hcl.json", testOpts)
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics: %v", diags)
	}
	golden(t, "valid/kiln.hcl.json.golden", dump(t, cfg))
}

func TestVariableOverrides(t *testing.T) {
	src := []byte(`
variable "version" { default = "dev" }
variable "replicas" {
  type    = number
  default = 1
}
variable "tags" {
  type    = list(string)
  default = []
}
image "web" {
  from = "scratch"
  labels = { version = var.version, replicas = var.replicas, tags = join(",", var.tags) }
}
`)
	tests := []struct {
		name    string
		vars    map[string]string
		environ []string
		want    map[string]string
		wantErr string
	}{
		{name: "defaults", want: map[string]string{"version": "dev", "replicas": "1", "tags": ""}},
		{name: "environment", environ: []string{"KILN_VAR_version=1.2", "KILN_VAR_replicas=3"},
			want: map[string]string{"version": "1.2", "replicas": "3", "tags": ""}},
		{name: "-var wins over environment", environ: []string{"KILN_VAR_version=1.2"}, vars: map[string]string{"version": "2.0", "tags": `["a","b"]`},
			want: map[string]string{"version": "2.0", "replicas": "1", "tags": "a,b"}},
		{name: "undeclared -var", vars: map[string]string{"nope": "x"}, wantErr: `A variable named "nope" was assigned with -var`},
		{name: "wrong type", vars: map[string]string{"replicas": "many"}, wantErr: "The value of -var replicas is not a number"},
		{name: "stray environment is ignored", environ: []string{"KILN_VAR_nope=x"}, want: map[string]string{"version": "dev", "replicas": "1", "tags": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse(filepath.Join(t.TempDir(), "kiln.hcl"), src, Options{Vars: tt.vars, Environ: append([]string{}, tt.environ...)})
			if tt.wantErr != "" {
				if !strings.Contains(diags.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", diags, tt.wantErr)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if diff := cmp.Diff(tt.want, cfg.Images[0].Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequiredVariable(t *testing.T) {
	src := []byte("variable \"token\" {}\nimage \"web\" {\n  from = \"scratch\"\n  env = { T = var.token }\n}\n")
	_, diags := Parse("kiln.hcl", src, testOpts)
	if !strings.Contains(diags.Error(), "No value for required variable") {
		t.Fatalf("got %v", diags)
	}
	if len(diags.Errs()) != 1 {
		t.Errorf("want exactly one error, not also one for the use of the variable: %v", diags)
	}
	cfg, diags := Parse("kiln.hcl", src, Options{Environ: []string{"KILN_VAR_token=s3cret"}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := cfg.Images[0].Env["T"]; got != "s3cret" {
		t.Errorf("env T = %q", got)
	}
}

func TestFormat(t *testing.T) {
	src := []byte("image \"web\" {\nfrom = \"scratch\"\n  user=\"1:1\"\n   env = { A = \"b\", LONGER = \"c\" }\n}\n")
	got, diags := Format("kiln.hcl", src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := "image \"web\" {\n  from = \"scratch\"\n  user = \"1:1\"\n  env  = { A = \"b\", LONGER = \"c\" }\n}\n"
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	again, _ := Format("kiln.hcl", got)
	if !bytes.Equal(again, got) {
		t.Error("formatting is not idempotent")
	}
	if _, diags := Format("kiln.hcl", []byte("image \"web\" {\n")); !diags.HasErrors() {
		t.Error("a syntax error was formatted")
	}
}

func TestDiagnosticsHaveSnippets(t *testing.T) {
	cfg, diags := Load("testdata/diags/unknown_attribute.hcl", testOpts)
	res := NewValidateResult(cfg.Files, diags)
	if res.Valid || res.ErrorCount != len(diags) {
		t.Fatalf("result %+v", res)
	}
	for _, d := range res.Diagnostics {
		if d.Range == nil || d.Snippet == nil || d.Snippet.Code == "" {
			t.Errorf("diagnostic %q lacks a range or snippet", d.Summary)
		}
	}
}
